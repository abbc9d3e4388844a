"""The cell store as the one resume layer (issue 24): as trustworthy as a database's log. Two runs on one
store share the work; edited, truncated or foreign cells are all reported and recomputed on request; a
journal that cannot be written loses no cell; a killed local worker is retried; a killed driver leaves no
worker behind; ``medbench run`` takes ``--set`` and records per-stage times. Real data, a zoo model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, need_real

pytestmark = [pytest.mark.realdata, pytest.mark.slow]  # CLI and pool start-ups: tens of seconds each
MODEL = "Baseline_ResNet8_ERM"
# a derived protocol whose attack cell takes seconds: Linf 2/255 only, few images and iterations
QUICK = ["adversarial.subset_size=24", "adversarial.n_iter=5", "adversarial.square_queries=30",
         "adversarial.threats={Linf: [{norm: Linf, eps: 0.00784313725490196, label: Linf-2/255, headline: true}]}"]


@pytest.fixture
def env(real_root, tmp_path, monkeypatch):
    need_real(real_root, "breastmnist.npz")
    monkeypatch.setenv("MEDBENCH_DATA", str(real_root))
    monkeypatch.setenv("MEDBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


def quick_protocol():
    import yaml

    from medbench.protocol import load_protocol

    return load_protocol().derive(**{k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in QUICK)})


def run(store: Path, out: Path | None = None, **kw):
    from medbench.matrix import run_matrix

    kw = {"models": [MODEL], "datasets": "breastmnist", "threats": ["clean"], "workers": 1, "progress": False, **kw}
    return run_matrix(store=store, out=out, **kw)


def cli(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "medbench", "run", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def test_two_runs_on_one_store_share_the_work_and_both_finish(env):
    """Started together on one store, the two runs compute each cell once between them (the other waits on
    the cell's lock and finds it stored), neither fails, and both write the same result."""
    from medbench.matrix.assemble import identity
    from medbench.matrix.store import Store

    args = ["--models", MODEL, "--datasets", "breastmnist", "--threats", "clean,Linf", "--store", str(env / "store"),
            "--quiet"] + [x for s in QUICK for x in ("--set", s)]
    procs = [cli(*args, "--out", str(env / f"out{i}")) for i in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (stdout, stderr) in zip(procs, outs):
        assert p.returncode == 0, stderr[-3000:]
    counts = [o[0].splitlines()[0] for o in outs]  # "3 cells: N computed, ..."
    computed = [int(c.split(" computed")[0].split(": ")[-1]) for c in counts]
    assert sum(computed) == 3, counts  # admission, clean, Linf: each computed by exactly one of the runs
    journal = [e["id"] for e in Store(env / "store").journal_entries()]
    assert len(journal) == len(set(journal)) == 3
    a, b = (env / f"out{i}" / "breastmnist" / f"{MODEL}.json" for i in (0, 1))
    assert identity(a.read_text()) == identity(b.read_text())
    assert json.loads(a.read_text())["provenance"]["protocol_version"].endswith("+custom")


def test_damaged_cells_are_all_reported_and_recomputed_on_request(env, capsys):
    from medbench.cli import main
    from medbench.matrix.store import DamagedCellError, Store

    store = Store(env / "store")
    first = run(store.root, env / "out", models=[MODEL, "Baseline_ResNet8_SAM"])
    assert first.ok and first.computed == 4
    original = (env / "out" / "breastmnist" / f"{MODEL}.json").read_text()
    cells = {(p["model_id"], p["kind"]): cid for cid in store.cell_ids() for p in [store.get(cid)]}
    edited = store.path(cells[(MODEL, "clean")])
    payload = json.loads(edited.read_text())
    payload["fields"]["clean"]["data"]["balanced_accuracy"] = 0.999  # checksum left as it was
    edited.write_text(json.dumps(payload, separators=(",", ":")))
    store.path(cells[(MODEL, "admission")]).write_bytes(os.urandom(300))
    store.path(cells[("Baseline_ResNet8_SAM", "clean")]).write_text("null")

    with pytest.raises(DamagedCellError) as info:
        run(store.root, env / "out2", models=[MODEL, "Baseline_ResNet8_SAM"])
    assert len(info.value.problems) == 3  # every bad cell, in one report
    assert "does not match its checksum" in info.value.problems[cells[(MODEL, "clean")]]
    assert "not JSON" in info.value.problems[cells[(MODEL, "admission")]]
    assert "JSON NoneType" in info.value.problems[cells[("Baseline_ResNet8_SAM", "clean")]]
    code = main(["run", "--models", f"{MODEL},Baseline_ResNet8_SAM", "--datasets", "breastmnist", "--threats",
                 "clean", "--store", str(store.root), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "3 damaged or tampered cell(s)" in err and "--recompute-damaged" in err
    assert "Traceback" not in err

    again = run(store.root, env / "out3", models=[MODEL, "Baseline_ResNet8_SAM"], recompute_damaged=True)
    assert again.ok and again.computed == 3 and again.stored == 1
    from medbench.matrix.assemble import identity

    assert identity((env / "out3" / "breastmnist" / f"{MODEL}.json").read_text()) == identity(original)
    assert len(list(edited.parent.glob("*.damaged-*"))) == 1  # set aside, not deleted


def test_a_journal_that_cannot_be_written_loses_no_cell(env, capfd):
    from medbench.matrix.store import Store

    store = Store(env / "store")
    store.journal.mkdir(parents=True)  # appending to it fails (even as root)
    report = run(store.root, env / "out", workers=1)
    assert "could not append to the matrix journal" in capfd.readouterr().err  # the workers' warning
    assert report.ok and report.computed == 2 and not report.failed
    assert len(store.cell_ids()) == 2 and run(store.root).stored == 2


def test_a_killed_local_worker_is_retried(env, monkeypatch):
    """Each cell's first worker dies after computing and before storing (fault injection): the pool is
    restarted, the cells are resubmitted, and each is written once."""
    from medbench.matrix.store import Store

    kills = env / "kills"
    kills.mkdir()
    monkeypatch.setenv("MEDBENCH_MATRIX_KILL_ONCE", str(kills))
    with pytest.warns(UserWarning, match="a local worker died"):
        report = run(env / "store", env / "out", workers=2)
    assert report.ok and report.computed == report.cells == 2
    assert len(list(kills.iterdir())) == 2  # both cells' first workers were killed
    journal = [e["id"] for e in Store(env / "store").journal_entries()]
    assert sorted(journal) == sorted(p.name for p in kills.iterdir())


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the workers")
def test_killing_the_driver_leaves_no_worker_running(env):
    proc = cli("--models", MODEL, "--datasets", "breastmnist", "--threats", "clean,Linf", "--workers", "2",
               "--store", str(env / "store"), "--quiet", *[x for s in QUICK for x in ("--set", s)])
    deadline = time.time() + 120
    workers: list[int] = []
    while time.time() < deadline and len(workers) < 2:
        workers = [c for c in _children(proc.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]
        time.sleep(0.2)
    assert len(workers) == 2, "the pool's workers did not start"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    left = [w for w in workers if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, "pool workers outlived their driver"


def test_run_takes_set_and_records_stage_times(env):
    from medbench.schema import EvaluationResult

    report = run(env / "store", env / "out", threats=["clean", "Linf"], protocol=quick_protocol())
    assert report.ok
    res = EvaluationResult.from_json(env / "out" / "breastmnist" / f"{MODEL}.json")
    assert res.provenance.protocol_version.endswith("+custom")
    stages = res.provenance.wall_time_per_stage_s
    assert {"admission", "clean", "Linf-2/255/apgd-ce"} <= set(stages), stages
    assert set(res.provenance.cpu_time_per_stage_s) == set(stages)
    assert res.adversarial["Linf-2/255"].subset.n == 24


def test_a_refused_model_is_an_outcome_not_a_failed_run(env, capsys):
    from medbench.cli import main

    code = main(["run", "--models", "Baseline_MobileNetV3S050_PGDAT", "--datasets", "breastmnist", "--threats",
                 "clean", "--store", str(env / "store"), "--out", str(env / "out"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "1 models not admitted" in captured.out
    assert "not admitted, no result written: breastmnist/Baseline_MobileNetV3S050_PGDAT" in captured.err
    assert "--allow-unranked" in captured.err and not (env / "out" / "breastmnist").exists()


@pytest.mark.parametrize("setting, says", [("adversarial.subset_size=abc", "is an integer (now 1000), got a string"),
                                           ("adversarial.subset_size=-5", "non-negative integer (now 1000), got -5"),
                                           ("adversarial.subset_size=[1", "not valid YAML")])
def test_a_bad_set_value_is_a_clear_error(env, capsys, setting, says):
    from medbench.cli import main

    for command in (["run", "--models", MODEL, "--datasets", "breastmnist", "--store", str(env / "store")],
                    ["evaluate", MODEL, "--dataset", "breastmnist"]):
        code = main([*command, "--set", setting, "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and says in err and "Traceback" not in err, err
