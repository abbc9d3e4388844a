"""Incremental site builds: a rebuild into the same folder after inputs change writes exactly the files
a full build writes, and renders only the datasets whose inputs changed."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from medbench.schema.result import EvaluationResult
from medbench.site import build_site
from medbench.site.build import CACHE as STATE
from site_synthetic import _result, write_synthetic


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and STATE not in p.relative_to(root).parts}


def _same_as_full(out: Path, reg: Path, res: Path, tmp: Path) -> None:
    full = tmp / "full"
    shutil.rmtree(full, ignore_errors=True)
    build_site(full, reg, res, full=True)
    a, b = _tree(out), _tree(full)
    assert sorted(a) == sorted(b), (sorted(set(a) - set(b))[:5], sorted(set(b) - set(a))[:5])
    assert [k for k in a if a[k] != b[k]] == []


def _reevaluate(res: Path, dataset: str, model_id: str, seed: int) -> None:
    """Replace a result by a valid new one with different numbers (so ranks move)."""
    path = res / dataset / f"{model_id}.json"
    weights = json.loads(path.read_text())["provenance"]["weights_sha256"]
    rec = _result(model_id, dataset, np.random.default_rng(seed), hostile=True, clean_n=30, weights_sha256=weights)
    EvaluationResult.model_validate(rec).to_json(path, indent=None)


@pytest.fixture()
def site(tmp_path):
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    ids = write_synthetic(reg, res, ["breastmnist", "dermamnist"], 8, hostile=True, clean_n=30, with_results=0.75)
    report = build_site(out, reg, res)
    assert report.problems == [] and "breastmnist" in report.rendered_units
    return ids, reg, res, out


def test_rebuild_after_one_changed_result_equals_a_full_build(site, tmp_path):
    ids, reg, res, out = site
    other, same = out / "breastmnist" / f"{ids[0]}.html", out / "dermamnist" / f"{ids[7]}.html"
    mtimes = other.stat().st_mtime_ns, same.stat().st_mtime_ns
    again = build_site(out, reg, res)
    assert again.rendered_units == [] and again.problems == []  # nothing changed: nothing rendered
    _reevaluate(res, "dermamnist", ids[2], seed=99)
    report = build_site(out, reg, res)
    assert report.rendered_units == ["dermamnist"]  # only the dataset that changed
    assert other.stat().st_mtime_ns == mtimes[0]  # other datasets' files are not rewritten
    assert report.kept_pages >= 1 and same.stat().st_mtime_ns == mtimes[1]  # unevaluated: nothing moved
    _same_as_full(out, reg, res, tmp_path)
    # the page shows the new record (its sha256) and the copied record is the new file
    sha = hashlib.sha256((res / "dermamnist" / f"{ids[2]}.json").read_bytes()).hexdigest()
    assert sha in (out / "dermamnist" / f"{ids[2]}.html").read_text()
    assert (out / "results" / "dermamnist" / f"{ids[2]}.json").read_bytes() == \
        (res / "dermamnist" / f"{ids[2]}.json").read_bytes()


def test_deleting_a_model_removes_its_page(site, tmp_path):
    ids, reg, res, out = site
    gone = ids[1]
    assert (out / "breastmnist" / f"{gone}.html").is_file()
    (reg / "breastmnist" / f"{gone}.yaml").unlink()
    (res / "breastmnist" / f"{gone}.json").unlink()
    report = build_site(out, reg, res)
    assert report.rendered_units == ["breastmnist"]
    assert not (out / "breastmnist" / f"{gone}.html").exists()
    assert not (out / "results" / "breastmnist" / f"{gone}.json").exists()
    rows = (out / "data" / "results.csv").read_text().splitlines()
    assert not [r for r in rows if r.startswith("breastmnist,") and f",{gone}," in r]
    assert [r for r in rows if r.startswith("dermamnist,") and f",{gone}," in r]  # the same id elsewhere stays
    _same_as_full(out, reg, res, tmp_path)


def test_registry_edits_new_models_and_logs_are_picked_up(site, tmp_path):
    ids, reg, res, out = site
    entry = reg / "dermamnist" / f"{ids[0]}.yaml"
    entry.write_text(entry.read_text().replace("Apache-2.0", "MIT") if "Apache-2.0" in entry.read_text()
                     else entry.read_text() + "tags: [edited]\n")
    (res / "breastmnist" / f"{ids[3]}.train.jsonl").write_text('{"epoch": 1, "loss": 0.5}\n')
    write_synthetic(reg, res, ["pneumoniamnist"], 3, clean_n=30)  # a dataset that had no models
    report = build_site(out, reg, res)
    assert report.rendered_units == ["breastmnist", "dermamnist", "pneumoniamnist"] and report.problems == []
    assert f"{ids[3]}.train.jsonl" in (out / "breastmnist" / f"{ids[3]}.html").read_text()
    _same_as_full(out, reg, res, tmp_path)


def test_touched_outputs_are_rendered_again(site, tmp_path):
    ids, reg, res, out = site
    page = out / "dermamnist" / f"{ids[4]}.html"
    good = page.read_bytes()
    page.write_text("edited by hand")
    (out / "dermamnist" / "index.html").unlink()
    (out / "junk.html").write_text("not from the build")
    report = build_site(out, reg, res)
    assert report.rendered_units == ["dermamnist"]
    assert page.read_bytes() == good and not (out / "junk.html").exists()
    _same_as_full(out, reg, res, tmp_path)


def test_a_bad_file_stays_a_problem_in_rebuilds(site):
    _, reg, res, out = site
    (res / "breastmnist" / "Broken2025X.json").write_text("{}")
    first = build_site(out, reg, res).problems
    assert len(first) == 1 and "Broken2025X.json" in first[0]
    assert build_site(out, reg, res).problems == first  # kept from the cache, not forgotten


def test_a_new_threat_column_rewrites_the_combined_csv(tmp_path):
    """results.csv has a column per threat of any dataset: a 2D dataset added beside a 3D one (which has
    no L2 results) adds the L2 columns to the rows kept from the 3D dataset."""
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    write_synthetic(reg, res, ["adrenalmnist3d"], 3, clean_n=30)
    build_site(out, reg, res)
    assert "L2" not in (out / "data" / "results.csv").read_text().splitlines()[0]
    write_synthetic(reg, res, ["breastmnist"], 3, clean_n=30)
    report = build_site(out, reg, res)
    assert "robust_ba_L2-0.25" in (out / "data" / "results.csv").read_text().splitlines()[0]
    assert report.rendered_units == ["breastmnist"]  # the kept rows get the new (empty) columns from the cache
    _same_as_full(out, reg, res, tmp_path)


def test_replaced_result_is_published_with_its_new_bytes(site, tmp_path):
    ids, reg, res, out = site
    path = res / "dermamnist" / f"{ids[1]}.json"
    before = path.read_bytes()
    fresh = tmp_path / "fresh.json"
    data = json.loads(before)
    data["provenance"]["seed"] = 1234  # a valid record with other bytes, put in place by rename (a new file)
    fresh.write_text(json.dumps(data))
    fresh.replace(path)
    build_site(out, reg, res)
    assert (out / "results" / "dermamnist" / path.name).read_bytes() == path.read_bytes() != before
    _same_as_full(out, reg, res, tmp_path)


def test_parallel_builds_keep_state_like_serial_ones(tmp_path, monkeypatch):
    """With worker processes, a first build's files are hashed by the workers that parse them: the hashes
    they send back must let a rebuild skip everything, and an incremental rebuild equal a full build."""
    import medbench.site.build as build

    monkeypatch.setattr(build, "PARALLEL_MIN_WEIGHT", 0)
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    ids = write_synthetic(reg, res, ["breastmnist", "dermamnist", "organmnist3d"], 6, clean_n=20)
    first = build_site(out, reg, res, jobs=2)
    assert first.problems == [] and {"breastmnist", "dermamnist", "organmnist3d"} <= set(first.rendered_units)
    assert build_site(out, reg, res, jobs=2).rendered_units == []
    _reevaluate(res, "organmnist3d", ids[3], seed=7)
    assert build_site(out, reg, res, jobs=2).rendered_units == ["organmnist3d"]
    _same_as_full(out, reg, res, tmp_path)


def test_parallel_builds_report_stray_folders_and_bad_files_like_serial_ones(tmp_path, monkeypatch):
    """A folder that is not a dataset (loaded for its problems, never rendered) and a broken result give the
    same problems and the same site whether datasets are built in worker processes or here; a rebuild keeps
    reporting them."""
    import medbench.site.build as build

    reg, res = tmp_path / "reg", tmp_path / "res"
    write_synthetic(reg, res, ["breastmnist", "dermamnist"], 4, clean_n=20)
    (res / "notadataset").mkdir()
    shutil.copy(next((res / "breastmnist").glob("*.json")), res / "notadataset" / "Stray2026X.json")
    (res / "dermamnist" / "Broken2026Y.json").write_text('{"result_schema_version": 1')
    serial = build_site(tmp_path / "serial", reg, res, jobs=1)
    monkeypatch.setattr(build, "PARALLEL_MIN_WEIGHT", 0)
    out = tmp_path / "parallel"
    parallel = build_site(out, reg, res, jobs=2)
    assert len(serial.problems) == 2 and parallel.problems == serial.problems
    assert any("Stray2026X.json" in p for p in serial.problems)
    assert any("Broken2026Y.json" in p for p in serial.problems)
    a, b = _tree(tmp_path / "serial"), _tree(out)
    assert sorted(a) == sorted(b) and [k for k in a if a[k] != b[k]] == []
    (res / "notadataset" / "Stray2026Z.json").write_text("[]")  # the stray folder changed: loaded again
    again = build_site(out, reg, res, jobs=2)
    assert "notadataset" not in again.rendered_units and len(again.problems) == 3
    assert [p for p in again.problems if "Stray2026Z.json" not in p] == serial.problems


def test_a_newer_record_re_renders_its_dataset_only_and_dates_are_scoped(site, tmp_path, monkeypatch):
    """A page's "data as of" date is that of the records it shows: a re-evaluation dated today re-renders
    its own dataset (its board shows the new date, the home page too), never the other datasets' pages."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    ids, reg, res, out = site
    other = out / "breastmnist" / f"{ids[0]}.html"
    mtime = other.stat().st_mtime_ns
    path = res / "dermamnist" / f"{ids[2]}.json"
    rec = json.loads(path.read_text())
    rec["provenance"]["started_at"] = "2027-03-04T05:06:07Z"  # newer than every other record
    EvaluationResult.model_validate(rec).to_json(path, indent=None)
    report = build_site(out, reg, res)
    assert report.rendered_units == ["dermamnist"] and other.stat().st_mtime_ns == mtime
    footer = re.compile(r"<footer.*?</footer>", re.S)
    assert "data as of 2027-03-04" in footer.search((out / "dermamnist" / "index.html").read_text()).group(0)
    assert "data as of 2027-03-04" in footer.search((out / "index.html").read_text()).group(0)
    assert "data as of 2027" not in (out / "breastmnist" / "index.html").read_text()
    model_footer = footer.search((out / "dermamnist" / f"{ids[2]}.html").read_text()).group(0)
    assert "data as of" not in model_footer  # the page says when its record was evaluated, in its body
    assert "Evaluated 2027-03-04T05:06:07Z" in (out / "dermamnist" / f"{ids[2]}.html").read_text()
    _same_as_full(out, reg, res, tmp_path)




def test_published_records_never_write_into_the_inputs(tmp_path):
    """Published records are hard links to the inputs where possible: the build never writes through one (a
    path written again is replaced), and neither through a symbolic link left in the output."""
    from medbench.site.render import Writer

    src = tmp_path / "in.json"
    src.write_bytes(b'{"a": 1}')
    w = Writer(tmp_path / "out")
    w.publish("results/x.json", src, "k")
    published = tmp_path / "out" / "results" / "x.json"
    assert published.read_bytes() == src.read_bytes()
    w.write("results/x.json", b'{"b": 2}')  # e.g. the path is reused for other bytes
    assert src.read_bytes() == b'{"a": 1}' and published.read_bytes() == b'{"b": 2}'
    (tmp_path / "out" / "b.html").symlink_to(src)
    w.write("b.html", b"new bytes")
    assert not (tmp_path / "out" / "b.html").is_symlink() and src.read_bytes() == b'{"a": 1}'
    st = published.stat()
    assert w.records["results/x.json"] == ["", st.st_size, st.st_mtime_ns]


def test_a_rank_that_moved_renders_the_page_again(tmp_path):
    """A re-evaluation moves the rank of the models between its old and new place: their pages show the new
    rank, the others are kept, and the site equals a full build."""
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    write_synthetic(reg, res, ["dermamnist"], 12, clean_n=20)
    build_site(out, reg, res)

    def ranks() -> dict[str, int]:
        board = json.loads((out / "data" / "dermamnist.json").read_text())["datasets"]["dermamnist"]
        return {e["model_id"]: e["rank"] for t in board["tracks"] for e in t["entries"] if e.get("rank") is not None}

    before = ranks()
    last = max(before, key=before.get)  # the last-ranked model, re-evaluated until it moves up
    for seed in range(1, 40):
        _reevaluate(res, "dermamnist", last, seed=seed)
        report = build_site(out, reg, res)
        after = ranks()
        moved = [m for m in after if m != last and after[m] != before.get(m)]
        if moved:
            break
        before = after
    assert moved, "no re-evaluation moved a rank"
    for m in moved:
        assert f"rank {after[m]} on " in (out / "dermamnist" / f"{m}.html").read_text()
    assert report.kept_pages >= 1
    _same_as_full(out, reg, res, tmp_path)


def _fail_on_dermamnist(how: str):
    from medbench.site import plots

    real = plots.track_scatters

    def broken(track):
        if track.dataset == "dermamnist":
            if how == "dies":
                os._exit(3)
            raise RuntimeError("disk on fire")
        return real(track)
    return broken


@pytest.mark.parametrize("how", ["raises", "dies"])
def test_a_failing_or_dying_worker_is_an_error_not_a_hang_and_the_next_build_is_whole(tmp_path, monkeypatch, how):
    """A dataset that raises in a worker process is reported by name; a worker that dies stops the build with
    an error (never a wait for replies that cannot come); the next build writes the whole site."""
    import medbench.site.build as build
    from medbench.errors import MedbenchError
    from medbench.site import plots

    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    write_synthetic(reg, res, ["breastmnist", "dermamnist", "pneumoniamnist"], 4, clean_n=20)
    monkeypatch.setattr(build, "PARALLEL_MIN_WEIGHT", 0)
    real = plots.track_scatters
    monkeypatch.setattr(plots, "track_scatters", _fail_on_dermamnist(how))
    with pytest.raises(MedbenchError, match="building dermamnist failed: RuntimeError: disk on fire"
                       if how == "raises" else "a worker process died"):
        build_site(out, reg, res, jobs=2)
    monkeypatch.setattr(plots, "track_scatters", real)
    report = build_site(out, reg, res, jobs=2)
    assert report.problems == [] and {"breastmnist", "dermamnist", "pneumoniamnist"} <= set(report.rendered_units)
    _same_as_full(out, reg, res, tmp_path)


def test_a_damaged_build_cache_costs_work_never_correctness(site, tmp_path):
    """A dataset whose cache file is damaged or missing is built as new (the others are kept); damaged input
    hashes or output records make a build start over; the site is always that of a full build."""
    ids, reg, res, out = site
    datasets = out / STATE / "datasets"
    (datasets / "dermamnist.json").write_text('{"key": ')  # damaged
    other = out / "breastmnist" / f"{ids[0]}.html"
    mtime = other.stat().st_mtime_ns
    report = build_site(out, reg, res)
    assert report.rendered_units == ["dermamnist"] and report.problems == []
    assert other.stat().st_mtime_ns == mtime  # (breastmnist kept)
    _same_as_full(out, reg, res, tmp_path)
    (datasets / "breastmnist.json").unlink()  # missing
    assert build_site(out, reg, res).rendered_units == ["breastmnist"]
    _same_as_full(out, reg, res, tmp_path)
    (out / STATE / "outputs.json").write_text("[]")  # not a record of outputs: start over
    (out / STATE / "inputs.json").write_text("{")
    assert {"breastmnist", "dermamnist"} <= set(build_site(out, reg, res).rendered_units)
    _same_as_full(out, reg, res, tmp_path)
    assert build_site(out, reg, res).rendered_units == []  # and the cache is whole again


def test_files_the_build_did_not_write_are_removed_and_its_own_kept(site, tmp_path, monkeypatch):
    """The output folder belongs to the build: a file or folder left in it by hand is removed by the next
    build, in serial and parallel builds alike; its own files and the build cache stay."""
    import medbench.site.build as build

    ids, reg, res, out = site
    for jobs in (1, 2):
        monkeypatch.setattr(build, "PARALLEL_MIN_WEIGHT", 0)
        (out / "stray.txt").write_text("x")
        (out / "breastmnist" / "Gone2026Model.html").write_text("<p>old</p>")
        (out / "empty" / "sub").mkdir(parents=True)
        _reevaluate(res, "dermamnist", ids[2], seed=100 + jobs)
        build_site(out, reg, res, jobs=jobs)
        assert not (out / "stray.txt").exists() and not (out / "breastmnist" / "Gone2026Model.html").exists()
        assert not (out / "empty").exists() and (out / STATE / "outputs.json").is_file()
        _same_as_full(out, reg, res, tmp_path)


def test_a_registry_entry_with_a_repeated_key_is_a_problem(site):
    """The site reads the registry as the zoo does (``safe_yaml``): a repeated key is refused, never read as
    its last value."""
    ids, reg, res, out = site
    entry = reg / "breastmnist" / f"{ids[0]}.yaml"
    entry.write_text(entry.read_text() + "license: GPL-3.0-only\n")
    problems = build_site(out, reg, res).problems
    assert len(problems) == 1 and f"{ids[0]}.yaml" in problems[0] and "duplicate key 'license'" in problems[0]


def test_registry_files_parsed_by_the_last_build_are_not_parsed_again(site, tmp_path, monkeypatch):
    """A rebuild of a changed dataset validates every registry entry, but takes the YAML value of a file whose
    bytes the last build parsed from the cache; an edited file is parsed again; the site equals a full build."""
    from medbench.site import load

    ids, reg, res, out = site
    parsed: list[str] = []
    real = load.load_yaml_text
    monkeypatch.setattr(load, "load_yaml_text", lambda text, **kw: parsed.append(text) or real(text, **kw))
    entry = reg / "dermamnist" / f"{ids[0]}.yaml"
    text = entry.read_text()
    entry.write_text(text.replace("Apache-2.0", "MIT") if "Apache-2.0" in text else text + "tags: [edited]\n")
    report = build_site(out, reg, res)
    assert report.rendered_units == ["dermamnist"] and report.problems == []
    registry_texts = {f.read_text() for f in reg.glob("*/*.yaml")}
    assert [t for t in parsed if t in registry_texts] == [entry.read_text()]  # the edited file only
    _same_as_full(out, reg, res, tmp_path)
