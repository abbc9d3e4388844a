"""The study framework: registry, typed results, the stored file, the CLI and the study pages.

A demo study (the majority-class rate of the real test split vs chance) stands in for the real studies,
whose own tests run them end to end; it is registered the way they are, through ``STUDIES``.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from conftest import need_real

DEMO = textwrap.dedent('''
    import numpy as np
    from pydantic import Field
    from medbench.data import load_dataset
    from medbench.schema.base import Strict
    from medbench.studies.base import Claim, Finding, Study, StudyOutcome, StudyResult, admit

    class Options(Strict):
        fraction: float = Field(1.0, gt=0, le=1, description="fraction of the test split")

    class Details(Strict):
        counts: list[int]

    class Result(StudyResult):
        details: Details

    def run(ctx):
        import medbench
        from medbench.data import get_spec

        split = load_dataset(ctx.dataset, "test", size=ctx.size, root=ctx.data_root)
        y = split.labels.reshape(-1)[: max(1, int(len(split.labels) * ctx.options.fraction))]
        counts = np.bincount(y).tolist()
        major = max(counts) / len(y)
        constant = admit("always class 1", split.labels, np.ones(len(split.labels), dtype=int),
                         get_spec(ctx.dataset), medbench.load_protocol())
        return StudyOutcome(summary=f"the majority class is {major:.1%} of the split",
                            findings=[Finding(key="majority", label="majority-class rate", value=major,
                                              reference=0.5, reference_label="half")],
                            details=Details(counts=counts), admissions=[constant],
                            claims=[Claim(claim="test splits are balanced", paper="nobody (2026), on paper",
                                          verdict="not reproduced", here=f"{major:.1%}", p_value=9.999e-05,
                                          resamples=10000, test="a permutation test", reason="one class dominates")])

    def rederive(old, ctx):
        out = run(ctx)
        out.derived_how = "counted again"
        return out

    STUDY = Study(name="demo", title="Demo study", question="How unbalanced is the test split?",
                  paper="nobody (2026)", paper_url=None, method="Counts `labels`.", result_type=Result,
                  run=run, options=Options, rederive=rederive)
''')


@pytest.fixture
def demo_study(tmp_path, monkeypatch):
    pkg = tmp_path / "demo_pkg"
    pkg.mkdir()
    (pkg / "demo_study.py").write_text(DEMO)
    monkeypatch.syspath_prepend(str(pkg))
    from medbench import studies

    monkeypatch.setitem(studies.STUDIES, "demo", "demo_study")
    yield studies
    sys.modules.pop("demo_study", None)


def test_run_study_writes_a_typed_result_with_provenance(real_root, demo_study, tmp_path):
    need_real(real_root, "breastmnist.npz")
    from medbench.data import load_dataset

    res = demo_study.run_study("demo", "breastmnist", data_root=real_root, out=tmp_path / "out",
                               work_dir=tmp_path / "work", options={"fraction": 1.0}, progress=False)
    y = load_dataset("breastmnist", "test", root=real_root).labels.reshape(-1)
    path = tmp_path / "out" / "demo" / "breastmnist_28px.json"
    data = json.loads(path.read_text())
    assert data["details"]["counts"] == [int((y == 0).sum()), int((y == 1).sum())]
    assert data["findings"][0]["value"] == pytest.approx(max((y == 0).mean(), (y == 1).mean()))
    assert data["provenance"]["data_md5"] == "750601b1f35ba3300ea97c75c52ff8f6"  # medmnist's breastmnist.npz
    assert data["provenance"]["options"] == {"fraction": 1.0}
    again = demo_study.load_result(path)
    assert type(again).__name__ == "Result" and again.details.counts == data["details"]["counts"]


def test_bad_options_and_unknown_study_say_what_to_do(real_root, demo_study, tmp_path):
    need_real(real_root, "breastmnist.npz")
    from medbench.errors import MedbenchError

    with pytest.raises(MedbenchError, match=r"fraction.*Its options: fraction"):
        demo_study.run_study("demo", "breastmnist", data_root=real_root, options={"fraction": 2}, progress=False,
                             work_dir=tmp_path)
    with pytest.raises(MedbenchError, match=r"Its options: fraction"):
        demo_study.run_study("demo", "breastmnist", data_root=real_root, options={"frac": 1}, progress=False,
                             work_dir=tmp_path)
    with pytest.raises(MedbenchError, match=r"Did you mean 'demo'"):
        demo_study.get_study("dmeo")


def test_a_tampered_result_file_is_refused(real_root, demo_study, tmp_path):
    need_real(real_root, "breastmnist.npz")
    demo_study.run_study("demo", "breastmnist", data_root=real_root, out=tmp_path, work_dir=tmp_path / "w",
                         progress=False)
    path = tmp_path / "demo" / "breastmnist_28px.json"
    data = json.loads(path.read_text())
    data["details"]["counts"] = "many"
    path.write_text(json.dumps(data))
    with pytest.raises(Exception, match="counts"):
        demo_study.load_result(path)


def test_the_site_has_a_page_per_study_with_its_findings(real_root, demo_study, tmp_path):
    need_real(real_root, "breastmnist.npz")
    from medbench.site import build_site

    lb = tmp_path / "leaderboard"
    (lb / "results").mkdir(parents=True)
    res = demo_study.run_study("demo", "breastmnist", data_root=real_root, out=lb / "studies",
                               work_dir=tmp_path / "w", progress=False)
    report = build_site(tmp_path / "site", tmp_path / "empty_zoo", lb / "results", leaderboard_dir=lb)
    assert not [p for p in report.problems if "demo" in p]
    page = (tmp_path / "site" / "studies" / "demo.html").read_text()
    assert "How unbalanced is the test split?" in page
    assert f"{res.findings[0].value * 100:.1f}" in page  # the harness's number, as a percentage
    assert "always class 1" in page and "refused" in page  # the admission table, with the reason
    assert page.index("The paper's claims here") > page.index("Admission of the models reported")
    assert "test splits are balanced" in page and "not reproduced" in page and "p &lt; 1e-4" in page
    assert (tmp_path / "site" / "studies" / "demo" / "breastmnist_28px.json").is_file()
    assert 'href="demo.html"' in (tmp_path / "site" / "studies" / "index.html").read_text()


def test_p_values_at_the_floor_of_a_resampling_test_are_bounds():
    from medbench.studies.base import format_p

    assert format_p(1 / 10001, 10000) == "p < 1e-4"  # the smallest p 10,000 permutations can give
    assert format_p(1 / 2001, 2000) == "p < 5e-4"
    assert format_p(2 / 10001, 10000) == "p = 0.0002"
    assert format_p(0.0091, 10000) == "p = 0.0091" and format_p(0.65) == "p = 0.65"


def test_admission_is_the_harness_rule_with_majority_share(real_root):
    need_real(real_root, "breastmnist.npz")
    import numpy as np

    import medbench
    from medbench.checks import clean_verdicts
    from medbench.data import get_spec
    from medbench.studies.base import admit

    y = medbench.load_dataset("breastmnist", "test", root=real_root).labels.reshape(-1)
    spec, protocol = get_spec("breastmnist"), medbench.load_protocol()
    constant = admit("constant", y, np.zeros_like(y), spec, protocol)
    assert not constant.admitted and constant.majority_share == 1.0 and constant.majority_class == "malignant"
    assert constant.balanced_accuracy == 0.5 and "75%" in constant.reason
    perfect = admit("oracle", y, y, spec, protocol)
    assert perfect.admitted and perfect.reason == "" and perfect.majority_share == pytest.approx(np.mean(y == 1))

    class Clean:  # what clean_verdicts reads, for the same predictions
        predictions, balanced_accuracy, ci_level = np.zeros_like(y).tolist(), 0.5, 0.95
        ci = {"balanced_accuracy": constant.balanced_accuracy_ci}

    assert [v.message for v in constant.verdicts] == [v.message for v in clean_verdicts(Clean, spec, protocol, y)]


def test_rederive_keeps_options_and_says_where_from(real_root, demo_study, tmp_path):
    need_real(real_root, "breastmnist.npz")
    import hashlib

    first = demo_study.run_study("demo", "breastmnist", data_root=real_root, out=tmp_path, work_dir=tmp_path / "w",
                                 options={"fraction": 0.5}, progress=False)
    path = tmp_path / "demo" / "breastmnist_28px.json"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    again = demo_study.run_study("demo", "breastmnist", data_root=real_root, out=tmp_path, work_dir=tmp_path / "w",
                                 progress=False, rederive_from=path)
    assert again.provenance.options == {"fraction": 0.5} and again.findings == first.findings
    d = again.provenance.derived_from
    assert d.result_sha256 == sha and d.started_at == first.provenance.started_at and d.how == "counted again"
    assert demo_study.load_result(path).provenance.derived_from == d
    from medbench.errors import MedbenchError

    with pytest.raises(MedbenchError, match="no earlier result"):
        demo_study.run_study("demo", "breastmnist", data_root=real_root, progress=False, work_dir=tmp_path / "w",
                             rederive_from=tmp_path / "missing.json")
