"""The evaluation matrix (``medbench run``): cells keyed on what they depend on, stored once, never
recomputed, assembled into the result ``benchmark()`` writes, identical on the local pool and on Ray,
and complete when a Ray worker dies mid-cell. Real data, committed zoo models, cheap threats only."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, need_real

MODELS = ["Baseline_ResNet8_ERM", "Baseline_ResNet8_SAM"]  # ERM is breastmnist's pinned BE / rBE reference
THREATS = ["clean", "corruptions"]
KILL_DIR = "kill-once"


@pytest.fixture(scope="module")
def env(real_root, tmp_path_factory):
    """One cache for the module's runs, set before any worker (pool or Ray) starts."""
    need_real(real_root, "breastmnist.npz")
    base = tmp_path_factory.mktemp("matrix")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDBENCH_CACHE", str(base / "cache"))
        mp.setenv("MEDBENCH_DATA", str(real_root))
        mp.setenv("MEDBENCH_MATRIX_KILL_ONCE", str(base / KILL_DIR))  # inert until the folder exists
        yield base


def run(env, name, **kw):
    from medbench.matrix import run_matrix

    kw = {"models": MODELS, "datasets": "breastmnist", "threats": THREATS, "workers": 2, "progress": False, **kw}
    with pytest.MonkeyPatch.context() as mp:  # the module's cache, not the per-test one conftest sets
        mp.setenv("MEDBENCH_CACHE", str(env / "cache"))
        return run_matrix(store=env / name / "store", out=env / name / "out", **kw)


def read(env, name, model="Baseline_ResNet8_SAM"):
    return (env / name / "out" / "breastmnist" / f"{model}.json").read_text()


@pytest.fixture(scope="module")
def local(env):
    return run(env, "local")


@pytest.mark.realdata
@pytest.mark.slow
def test_results_equal_what_benchmark_writes(env, local):
    from medbench import EvaluationResult, benchmark
    from medbench.matrix.assemble import identity

    assert local.ok and local.computed == local.cells == 6  # 2 models x (admission, clean, corruptions)
    torch.set_num_threads(1)  # as in the workers
    with pytest.MonkeyPatch.context() as mp:  # the same corrupted-set cache (its manifest sha256 is in the result)
        mp.setenv("MEDBENCH_CACHE", str(env / "cache"))
        erm = benchmark(MODELS[0], "breastmnist", threats=THREATS, progress=False)
        sam = benchmark(MODELS[1], "breastmnist", threats=THREATS, reference=erm, progress=False)
    for model, expected in zip(MODELS, (erm, sam)):
        got = EvaluationResult.from_json(read(env, "local", model))
        assert identity(got) == identity(expected)
    assert sam.corruptions.be is not None and sam.corruptions.reference_model == MODELS[0]


@pytest.mark.realdata
@pytest.mark.slow
def test_a_second_run_computes_no_cell_and_writes_the_same_bytes(env, local):
    before = {m: read(env, "local", m) for m in MODELS}
    again = run(env, "local", executor="local", workers=1)
    assert (again.computed, again.reused, again.stored) == (0, 0, again.cells)
    assert {m: read(env, "local", m) for m in MODELS} == before
    from medbench.matrix.store import Store

    assert len(Store(env / "local" / "store").journal_entries()) == local.cells  # each cell written once


@pytest.mark.realdata
@pytest.mark.slow
def test_the_reference_cells_are_planned_for_a_model_without_its_reference(env, local):
    only_sam = run(env, "local", models=["Baseline_ResNet8_SAM"])
    assert only_sam.cells == 6 and only_sam.computed == 0  # SAM's corruptions read ERM's clean + corruption cells


def _plan_ids(env, zoo=None):
    from medbench.matrix.runner import plan, select
    from medbench.matrix.store import Store
    from medbench.paths import data_root
    from medbench.protocol import load_protocol
    from medbench.zoo.registry import clear_cache

    with pytest.MonkeyPatch.context() as mp:
        if zoo is not None:
            mp.setenv("MEDBENCH_ZOO", str(zoo))
        clear_cache()
        p, _ = plan(select(MODELS, "breastmnist"), THREATS, size=28, seed=0, device="cpu", batch_size=None,
                    data_root=data_root(), protocol=load_protocol(), store=Store(env / "plan"), threads=1, reuse=None)
    clear_cache()
    return {(t["entry"].id, kind): cid for t in p.targets.values() for kind, cid in t["cells"].items()}


@pytest.mark.realdata
def test_changed_weights_give_new_cell_ids(env, tmp_path):
    from safetensors.torch import load_file, save_file

    from medbench.models.weights import sha256sum

    zoo = tmp_path / "zoo" / "breastmnist"
    zoo.mkdir(parents=True)
    for m in MODELS:
        for ext in ("yaml", "safetensors"):
            shutil.copy(REPO / "model_zoo" / "breastmnist" / f"{m}.{ext}", zoo)
    weights = zoo / f"{MODELS[0]}.safetensors"
    state = load_file(weights)
    name = next(k for k, v in state.items() if v.dtype.is_floating_point and v.ndim == 4)
    state[name] = state[name] * 1.01  # a fine-tuned copy of the reference model
    save_file(state, weights)
    text = (zoo / f"{MODELS[0]}.yaml").read_text()
    old = sha256sum(REPO / "model_zoo" / "breastmnist" / f"{MODELS[0]}.safetensors")
    (zoo / f"{MODELS[0]}.yaml").write_text(text.replace(old, sha256sum(weights)).replace(
        f"size_bytes: {(REPO / 'model_zoo' / 'breastmnist' / f'{MODELS[0]}.safetensors').stat().st_size}",
        f"size_bytes: {weights.stat().st_size}"))
    before, after = _plan_ids(env), _plan_ids(env, zoo.parent)
    assert all(before[(MODELS[0], k)] != after[(MODELS[0], k)] for k in ("admission", "clean", "corruptions"))
    # SAM's own cells stay; its corruption cell reads the reference's cells, so it changes with them
    assert before[(MODELS[1], "clean")] == after[(MODELS[1], "clean")]
    assert before[(MODELS[1], "corruptions")] != after[(MODELS[1], "corruptions")]


@pytest.mark.realdata
@pytest.mark.slow
def test_cell_code_versions_cover_every_module_a_cell_runs(env, local, tmp_path):
    """The sources a kind of cell is keyed on include every medbench module its computation imports."""
    from medbench.matrix.cells import Job, package_root, source_files
    from medbench.matrix.store import Store

    store = Store(env / "local" / "store")
    by_kind = {}
    for cid in store.cell_ids():
        payload = store.get(cid)
        if payload["model_id"] == MODELS[0]:
            by_kind[payload["kind"]] = payload
    code = (
        "import json, sys\n"
        "from medbench.matrix.cells import Job\nfrom medbench.matrix.compute import compute_cell\n"
        "job = Job(**json.loads(sys.stdin.read()))\nstatus, _ = compute_cell(job)\nassert status == 'computed'\n"
        "print(json.dumps(sorted({m.__file__ for n, m in list(sys.modules.items())"
        " if n.startswith('medbench') and getattr(m, '__file__', None)})))\n"
    )
    root = package_root()
    orchestration = {"__init__.py", "errors.py", "matrix/__init__.py", "matrix/cells.py", "matrix/store.py",
                     "matrix/runner.py"}
    for kind in ("admission", "clean", "corruptions"):
        cell = by_kind[kind]
        inputs = {"clean": by_kind["clean"]} if kind == "corruptions" else {}
        job = Job(id=cell["id"], kind=kind, key=cell["key"], model_id=MODELS[0], dataset="breastmnist", size=28,
                  seed=0, device="cpu", batch_size=cell["key"]["batch_size"], data_root=os.environ["MEDBENCH_DATA"],
                  protocol_version=cell["key"]["protocol"]["version"], store=str(tmp_path / kind),
                  depends=cell["key"]["depends"], inputs=inputs)
        out = subprocess.run([sys.executable, "-c", code], input=json.dumps(dataclasses.asdict(job)),
                             capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), "MEDBENCH_CACHE": str(env / "cache")})
        assert out.returncode == 0, out.stderr[-2000:]
        imported = {Path(f).resolve().relative_to(root).as_posix() for f in json.loads(out.stdout.splitlines()[-1])}
        keyed = {p.relative_to(root).as_posix() for p in source_files(kind)}
        assert imported - keyed - orchestration == set(), kind
        # and the recomputed cell has the stored one's numbers
        again = Store(tmp_path / kind).get(cell["id"])
        assert again["fields"] == cell["fields"]


def test_cli_explains_bad_input(capsys):
    from medbench.cli import main

    assert main(["run", "--models", "all", "--datasets", "breastmnist", "--threats", "clean,Linf-8/255"]) == 2
    assert "threat families, not budgets" in capsys.readouterr().err
    assert main(["run", "--models", "NoSuchModel", "--datasets", "breastmnist"]) == 1
    err = capsys.readouterr().err
    assert "NoSuchModel" in err and "medbench zoo list" in err and "Traceback" not in err
    assert main(["run", "--models", "all", "--datasets", "all", "--address", "auto"]) == 2
    assert "--executor ray" in capsys.readouterr().err


# ----------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_instance(env):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.realdata
@pytest.mark.slow
def test_ray_gives_the_local_results(env, local, ray_instance):
    from medbench.matrix.assemble import identity

    report = run(env, "ray", executor="ray")
    assert report.ok and report.computed == report.cells == 6
    for m in MODELS:
        assert identity(read(env, "ray", m)) == identity(read(env, "local", m))
    assert ray_instance.is_initialized()  # a running instance is used and left running


@pytest.mark.realdata
@pytest.mark.slow
def test_a_killed_ray_worker_loses_and_duplicates_no_cell(env, local, ray_instance):
    from medbench.matrix.assemble import identity
    from medbench.matrix.store import Store

    kills = env / KILL_DIR
    kills.mkdir()  # arms the fault injection: each cell's worker dies once, after computing, before storing
    try:
        report = run(env, "killed", executor="ray", models=[MODELS[0]])
    finally:
        shutil.rmtree(kills.with_name(KILL_DIR + "-done"), ignore_errors=True)
        kills.rename(kills.with_name(KILL_DIR + "-done"))
    killed = sorted(p.name for p in kills.with_name(KILL_DIR + "-done").iterdir())
    store = Store(env / "killed" / "store")
    assert report.ok and report.computed == report.cells == 3
    assert killed == store.cell_ids() and len(killed) == 3  # every cell's first worker died
    journal = [e["id"] for e in store.journal_entries()]
    assert sorted(journal) == killed  # each cell written exactly once, by the retry
    assert identity(read(env, "killed", MODELS[0])) == identity(read(env, "local", MODELS[0]))
