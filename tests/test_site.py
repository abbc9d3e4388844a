"""The leaderboard site: build on a synthetic registry (with hostile text), escaping, validity,
determinism, partial results, the JSON API, and the committed ``site/`` not drifting."""

from __future__ import annotations

import filecmp
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from medbench.errors import MedbenchError
from medbench.schema.result import EvaluationResult
from medbench.site import build_site
from medbench.site.build import CACHE as STATE
from site_synthetic import HOSTILE, write_synthetic

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A hostile synthetic registry: 10 entries on two datasets, results for 8 of them."""
    base = tmp_path_factory.mktemp("site")
    reg, res = base / "model_zoo", base / "results"
    ids = write_synthetic(reg, res, ["breastmnist", "dermamnist"], 10, hostile=True, with_results=0.8)
    out = base / "site"
    report = build_site(out, reg, res)
    return ids, reg, res, out, report


def _html(out: Path) -> list[Path]:
    return sorted(out.rglob("*.html"))


def test_builds_every_page(synth):
    _, _, _, out, report = synth
    assert report.problems == []
    assert (out / "index.html").is_file()
    for name in ("breastmnist", "dermamnist", "chestmnist", "vesselmnist3d"):  # datasets without entries too
        assert (out / name / "index.html").is_file()
    assert len(list((out / "breastmnist").glob("*.html"))) == 1 + 10  # board + one page per entry
    assert "No results yet" in (out / "pathmnist" / "index.html").read_text()
    for f in ("data/results.json", "data/results.csv", "data/breastmnist.csv", "static/style.css",
              "static/leaderboard.js", "results/breastmnist/Baseline_ResNet18_ERM.json"):
        assert (out / f).is_file(), f


def test_hostile_text_is_escaped_everywhere(synth):
    _, _, _, out, _ = synth
    pages = _html(out)
    seen_escaped = 0
    for page in pages:
        text = page.read_text()
        assert "<script>alert" not in text, page
        assert "<img src=x" not in text, page
        assert "onerror=alert" not in text or "&lt;img src=x onerror=alert" in text, page
        seen_escaped += "&lt;script&gt;alert" in text
    assert seen_escaped >= 10  # titles, authors, venues, class names, check messages were rendered


def test_pages_are_valid_html5_and_self_contained(synth):
    ids, _, _, out, _ = synth
    html5lib = pytest.importorskip("html5lib")
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    sample = [out / "index.html", out / "breastmnist" / "index.html", out / "chestmnist" / "index.html",
              out / "breastmnist" / f"{ids[0]}.html", out / "breastmnist" / f"{ids[-1]}.html"]
    for page in sample:
        parser.parse(page.read_bytes())  # raises on any parse error
    for page in _html(out):
        text = page.read_text()
        assert text.startswith("<!DOCTYPE html>")
        assert "Content-Security-Policy" in text and "default-src 'none'" in text
        # resources (scripts, styles, images, fonts) are local: no absolute URL in src= or <link href=
        assert not re.search(r'\ssrc="(https?:)?//', text), page
        assert not re.search(r'<link[^>]+href="(https?:)?//', text), page
        assert "@import" not in text and "url(http" not in text
        assert page.stat().st_size < 1_000_000
    css = (out / "static" / "style.css").read_text()
    assert "prefers-color-scheme: dark" in css and "url(" not in css


def test_build_is_deterministic_and_prunes(synth, tmp_path):
    ids, reg, res, out, _ = synth
    again = tmp_path / "again"
    build_site(again, reg, res)
    cmp = filecmp.dircmp(out, again)
    assert _tree_equal(out, again), cmp.report_full_closure()
    # removing an entry and its result removes its page on the next build into the same folder
    reg2, res2 = tmp_path / "reg", tmp_path / "res"
    shutil.copytree(reg, reg2)
    shutil.copytree(res, res2)
    (reg2 / "breastmnist" / f"{ids[1]}.yaml").unlink()
    (res2 / "breastmnist" / f"{ids[1]}.json").unlink()
    build_site(again, reg2, res2)
    assert not (again / "breastmnist" / f"{ids[1]}.html").exists()
    assert not (again / "results" / "breastmnist" / f"{ids[1]}.json").exists()


def test_parallel_build_writes_the_same_bytes(synth, tmp_path, monkeypatch):
    import medbench.site.build as build

    _, reg, res, out, _ = synth
    monkeypatch.setattr(build, "PARALLEL_MIN_WEIGHT", 0)
    report = build_site(tmp_path / "par", reg, res, jobs=2)
    assert report.problems == []
    assert _tree_equal(out, tmp_path / "par")


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(MedbenchError, match="refusing"):
        build_site(tmp_path, tmp_path / "nothing", tmp_path / "nothing")
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_results_json_api(synth):
    _, _, res, out, _ = synth
    doc = json.loads((out / "data" / "results.json").read_text())
    assert doc["api_version"] == 1
    assert set(doc["datasets"]) >= {"breastmnist", "dermamnist", "chestmnist"}
    track = doc["datasets"]["breastmnist"]["tracks"][0]
    assert track["size"] == 28 and track["protocol_version"] == "1" and track["rank_by"] == "Linf-2/255"
    entries = track["entries"]
    ranked = [e for e in entries if e["ranked"]]
    assert [e["rank"] for e in ranked] == sorted(e["rank"] for e in ranked)
    values = [e["adversarial"]["Linf-2/255"]["robust_balanced_accuracy"] for e in ranked]
    assert values == sorted(values, reverse=True)
    for e in entries:  # every number is the one in the record it names, whose sha256 it carries
        record = EvaluationResult.from_json(res / "breastmnist" / f"{e['model_id']}.json")
        assert e["clean"]["balanced_accuracy"] == record.clean.balanced_accuracy
        assert e["provenance"]["result_file"] == f"results/breastmnist/{e['model_id']}.json"
        assert (out / e["provenance"]["result_file"]).is_file()
        assert e["reported_by_authors"] is None or "source" in e["reported_by_authors"]
    assert len(doc["datasets"]["breastmnist"]["unevaluated"]) == 2
    one = json.loads((out / "data" / "breastmnist.json").read_text())
    assert list(one["datasets"]) == ["breastmnist"]
    header = (out / "data" / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == ["dataset", "size", "protocol_version", "rank", "tie_group", "model_id"]


def _tree_equal(a: Path, b: Path) -> bool:
    # the build's own state (STATE) is not part of the site
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and STATE not in p.relative_to(a).parts)
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and STATE not in p.relative_to(b).parts)
    return fa == fb and all((a / p).read_bytes() == (b / p).read_bytes() for p in fa)


def _edit(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_partial_and_odd_results(tmp_path):
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    ids = write_synthetic(reg, res, ["pneumoniamnist"], 7)
    d = res / "pneumoniamnist"
    _edit(d / f"{ids[0]}.json", lambda r: r.update(corruptions=None, adversarial={}, curves=None))  # clean only
    _edit(d / f"{ids[1]}.json", lambda r: r["provenance"].update(protocol_version="1+custom"))
    _edit(d / f"{ids[2]}.json", lambda r: r["checks"].__setitem__(0, dict(r["checks"][0], passed=False)))
    _edit(d / f"{ids[3]}.json", lambda r: r["provenance"].update(weights_sha256="f" * 64))
    _edit(d / f"{ids[4]}.json", lambda r: r["checks"].__setitem__(4, dict(r["checks"][4], passed=False)))
    (reg / "pneumoniamnist" / f"{ids[5]}.yaml").unlink()  # a result without a registry entry
    (d / "Broken2025Model.json").write_text("{not json")
    (d / f"{ids[6]}.train.json").write_text('{"epoch": 1}')  # a training log next to the results
    report = build_site(out, reg, res)
    assert any("Broken2025Model.json" in p for p in report.problems)
    doc = json.loads((out / "data" / "results.json").read_text())["datasets"]["pneumoniamnist"]
    tracks = {t["protocol_version"]: t for t in doc["tracks"]}
    assert set(tracks) == {"1", "1+custom"}  # versions never mixed in one ranking
    assert [e["model_id"] for e in tracks["1+custom"]["entries"]] == [ids[1]]
    std = {e["model_id"]: e for e in tracks["1"]["entries"]}
    codes = {k: {f["code"] for f in e["flags"]} for k, e in std.items()}
    assert "incomplete" in codes[ids[0]] and not std[ids[0]]["ranked"]  # no Linf result: listed, unranked
    assert "not-admitted" in codes[ids[2]] and not std[ids[2]]["ranked"]
    assert "weights-mismatch" in codes[ids[3]] and not std[ids[3]]["ranked"]
    assert "unreliable" in codes[ids[4]] and not std[ids[4]]["ranked"]  # a failed sanity check: never ranked
    assert "unregistered" in codes[ids[5]]
    page = (out / "pneumoniamnist" / "index.html").read_text()
    assert "custom protocol" in page and "evaluation unreliable" in page and "not admitted" in page
    assert (out / "pneumoniamnist" / f"{ids[0]}.html").is_file()
    assert "differs from the registry" in (out / "pneumoniamnist" / f"{ids[3]}.html").read_text()


def test_entries_without_results_and_reported_numbers(tmp_path):
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    ids = write_synthetic(reg, res, ["retinamnist"], 3, with_results=0.0)
    entry = yaml.safe_load((reg / "retinamnist" / f"{ids[0]}.yaml").read_text())
    entry["reported"] = {"source": "MedMNIST v2, Table 3", "clean_auc": 0.717, "clean_accuracy": 0.524}
    (reg / "retinamnist" / f"{ids[0]}.yaml").write_text(yaml.safe_dump(entry))
    build_site(out, reg, res)
    board = (out / "retinamnist" / "index.html").read_text()
    assert "No results yet" in board and "not yet evaluated" in board
    model = (out / "retinamnist" / f"{ids[0]}.html").read_text()
    assert "Reported by the authors (not verified)" in model and "71.7" in model
    assert f'medbench.load_model("{ids[0]}", dataset="retinamnist")' in model


def test_cli_build(tmp_path, capsys):
    from medbench.cli import main

    reg, res = tmp_path / "reg", tmp_path / "res"
    write_synthetic(reg, res, ["breastmnist"], 2)
    assert main(["leaderboard", "build", "--out", str(tmp_path / "s"), "--registry", str(reg),
                 "--results", str(res)]) == 0
    assert "built" in capsys.readouterr().out
    (res / "breastmnist" / "Bad2025X.json").write_text("[]")
    assert main(["leaderboard", "build", "--out", str(tmp_path / "s"), "--registry", str(reg),
                 "--results", str(res), "--strict"]) == 1
    # an incremental rebuild says which datasets it rendered again and what it kept
    assert "rendered again: breastmnist; model pages kept as they were: 2" in capsys.readouterr().out
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "s").rglob("*"))
    assert main(["leaderboard", "build", "--out", str(tmp_path / "s"), "--registry", str(tmp_path / "typo"),
                 "--results", str(res)]) == 1
    assert "--registry" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "s").rglob("*")) == before  # the old build is kept
    assert main(["leaderboard", "build", "--out", str(tmp_path / "s"), "--registry", str(reg),
                 "--results", str(res), "--jobs", "0"]) == 2
    assert "--jobs 0" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "s").rglob("*")) == before


def test_committed_site_matches_a_fresh_build(tmp_path):
    """``site/`` is generated: rebuild with ``medbench leaderboard build --out site`` after changing
    the registry, the results, the templates or the generator."""
    committed = REPO / "site"
    assert committed.is_dir(), "site/ is missing: run 'medbench leaderboard build --out site'"
    fresh = tmp_path / "site"
    build_site(fresh, REPO / "model_zoo", REPO / "leaderboard" / "results")
    # the build state (machine-specific paths and file times, git-ignored) is not part of the site
    fa = sorted(str(p.relative_to(committed)) for p in committed.rglob("*")
                if p.is_file() and STATE not in p.relative_to(committed).parts)
    fb = sorted(str(p.relative_to(fresh)) for p in fresh.rglob("*") if p.is_file() and STATE not in p.relative_to(fresh).parts)
    assert fa == fb, f"site/ files differ from a fresh build: only committed {sorted(set(fa) - set(fb))[:5]}, " \
                     f"only fresh {sorted(set(fb) - set(fa))[:5]}; rebuild with 'medbench leaderboard build'"
    stale = [p for p in fa if (committed / p).read_bytes() != (fresh / p).read_bytes()]
    assert not stale, f"site/ is stale ({len(stale)} files, e.g. {stale[:5]}): run 'medbench leaderboard build --out site'"


def test_multilabel_dataset_ranks_by_clean(tmp_path):
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    write_synthetic(reg, res, ["chestmnist"], 3)
    assert build_site(out, reg, res).problems == []
    track = json.loads((out / "data" / "chestmnist.json").read_text())["datasets"]["chestmnist"]["tracks"][0]
    assert track["rank_by"] == "clean" and track["tie_method"] == "overlap" and track["threats"] == []
    assert all(e["ranked"] for e in track["entries"])
    assert "no AutoAttack track" in (out / "chestmnist" / "index.html").read_text()


LITERATURE = [{"dataset": "breastmnist", "size": 28, "model": "WideNet (28), Doe et al.", "architecture": "WRN-28-10",
               "recipe": "erm", "source": "Doe et al. 2025, Table 4", "venue": "MIDL 2025",
               "url": "https://example.org/doe2025", "clean_accuracy": 0.777, "clean_auc": 0.888},
              {"dataset": "dermamnist", "model": "TinyNet", "architecture": "tiny", "source": "Roe 2024",
               "clean_balanced_accuracy": 0.615}]


def test_published_numbers_are_a_labelled_unranked_row(tmp_path):
    """Literature numbers show as a 'reported' row under the table, beside same-recipe baselines, and
    in the JSON API only under ``reported_in_literature``, never among the ranked entries."""
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    ids = write_synthetic(reg, res, ["breastmnist"], 6)
    lit = tmp_path / "literature.yaml"
    lit.write_text(yaml.safe_dump(LITERATURE))
    assert build_site(out, reg, res, literature=lit).problems == []
    page = (out / "breastmnist" / "index.html").read_text()
    foot = page[page.index("<tfoot>"):page.index("</tfoot>")]
    assert "WideNet (28), Doe et al." in foot and ">reported<" in foot and "88.8" in foot and "77.7" in foot
    assert "WideNet" not in page[page.index("<tbody>"):page.index("</tbody>")]  # never among ranked rows
    doc = json.loads((out / "data" / "results.json").read_text())["datasets"]
    assert [p["model"] for p in doc["breastmnist"]["reported_in_literature"]] == ["WideNet (28), Doe et al."]
    assert all(e["model_id"] in ids for t in doc["breastmnist"]["tracks"] for e in t["entries"])
    assert "WideNet" not in (out / "data" / "results.csv").read_text()
    # beside the same-recipe (erm) rows, with the difference in points
    entries = {e["model_id"]: e for e in doc["breastmnist"]["tracks"][0]["entries"]}
    # beside the same-recipe reference baselines (never submitted models), with the difference in points
    for mid in ids:
        entry = yaml.safe_load((reg / "breastmnist" / f"{mid}.yaml").read_text())
        entry["recipe"]["method"] = "erm"
        (reg / "breastmnist" / f"{mid}.yaml").write_text(yaml.safe_dump(entry))
    assert build_site(out, reg, res, literature=lit).problems == []
    section = (out / "breastmnist" / "index.html").read_text().split("Against the literature")[1].split("</section>")[0]
    for mid in ids:
        acc = entries[mid]["clean"]["accuracy"]
        shown = f'href="{mid}.html"' in section
        assert shown == mid.startswith("Baseline_"), mid
        assert not shown or f"{(acc - 0.777) * 100:+.1f}" in section
    # a dataset without results still shows what to beat
    derma = (out / "dermamnist" / "index.html").read_text()
    assert "No results yet" in derma and "TinyNet" in derma and "BA 61.5" in derma


@pytest.mark.parametrize("bad, field", [({"clean_auc": 93.0}, "clean_auc"), ({"dataset": "breastmnst"}, "dataset"),
                                        ({"clean_accuracy": None, "clean_auc": None}, "at least one"),
                                        ({"auc": 0.9}, "auc")])
def test_a_bad_literature_file_is_a_problem_not_a_crash(tmp_path, bad, field):
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    write_synthetic(reg, res, ["breastmnist"], 2)
    lit = tmp_path / "literature.yaml"
    lit.write_text(yaml.safe_dump([LITERATURE[1], {**LITERATURE[0], **bad}]))
    report = build_site(out, reg, res, literature=lit)
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert "literature.yaml" in problem and "item 1" in problem and field in problem, problem
    assert "<tfoot>" not in (out / "breastmnist" / "index.html").read_text()  # the file is skipped whole


def test_committed_literature_file_is_valid_and_matches_the_reference():
    """``leaderboard/literature.yaml`` holds the MedMNIST v2 ResNet-18 (28) numbers of REFERENCE.md."""
    from medbench.schema.literature import read_literature

    published = {p.dataset: p for p in read_literature(REPO / "leaderboard" / "literature.yaml")}
    assert (published["breastmnist"].clean_accuracy, published["breastmnist"].clean_auc) == (0.863, 0.901)
    assert (published["pneumoniamnist"].clean_accuracy, published["pneumoniamnist"].clean_auc) == (0.854, 0.944)
    assert all(p.recipe == "erm" and p.architecture == "ResNet-18" and p.size == 28 for p in published.values())


def test_templates_escape_every_value_and_refuse_undefined_names():
    """The site's templates escape with Jinja's own autoescape (markupsafe): hostile text in any kind of value
    is written as ``markupsafe.escape`` writes it, ``Markup`` is kept, and an undefined name is an error."""
    import jinja2
    from markupsafe import Markup, escape

    from medbench.site.render import environment

    class Html:
        def __html__(self):
            return "<b>safe</b>"

    values = ["<a href='x'>&\"</a>", "plain", "", Markup("<i>kept</i>"), 3, 2.5, None, True, Html(),
              ["<x>"], {"k": "<v>"}, "\u2028\u00e9<"]
    env = environment()
    got = env.from_string("{% for v in values %}[{{ v }}]{% endfor %}").render(values=values)
    assert got == "".join(f"[{escape(v)}]" for v in values)
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ not_given }}").render()
