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
    from medbench.studies.base import Finding, Study, StudyOutcome, StudyResult

    class Options(Strict):
        fraction: float = Field(1.0, gt=0, le=1, description="fraction of the test split")

    class Details(Strict):
        counts: list[int]

    class Result(StudyResult):
        details: Details

    def run(ctx):
        split = load_dataset(ctx.dataset, "test", size=ctx.size, root=ctx.data_root)
        y = split.labels.reshape(-1)[: max(1, int(len(split.labels) * ctx.options.fraction))]
        counts = np.bincount(y).tolist()
        major = max(counts) / len(y)
        return StudyOutcome(summary=f"the majority class is {major:.1%} of the split",
                            findings=[Finding(key="majority", label="majority-class rate", value=major,
                                              reference=0.5, reference_label="half")],
                            details=Details(counts=counts))

    STUDY = Study(name="demo", title="Demo study", question="How unbalanced is the test split?",
                  paper="nobody (2026)", paper_url=None, method="Counts `labels`.", result_type=Result,
                  run=run, options=Options)
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
    import shutil

    from medbench.site import build_site
    from medbench.site.build import LEADERBOARD_DIR

    lb = tmp_path / "leaderboard"
    shutil.copytree(LEADERBOARD_DIR / "templates", lb / "templates")
    shutil.copytree(LEADERBOARD_DIR / "static", lb / "static")
    (lb / "results").mkdir()
    res = demo_study.run_study("demo", "breastmnist", data_root=real_root, out=lb / "studies",
                               work_dir=tmp_path / "w", progress=False)
    report = build_site(tmp_path / "site", tmp_path / "empty_zoo", lb / "results", leaderboard_dir=lb)
    assert not [p for p in report.problems if "demo" in p]
    page = (tmp_path / "site" / "studies" / "demo.html").read_text()
    assert "How unbalanced is the test split?" in page
    assert f"{res.findings[0].value * 100:.1f}" in page  # the harness's number, as a percentage
    assert (tmp_path / "site" / "studies" / "demo" / "breastmnist_28px.json").is_file()
    assert 'href="demo.html"' in (tmp_path / "site" / "studies" / "index.html").read_text()
