"""``benchmark(..., threats=Linf/L2/curves)``: the evaluation subset, every task kind on real data,
resuming a killed run, and a robust vs a standard model."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import medbench
from medbench.models.architectures import build_architecture
from medbench.attacks.resume import ChunkStore
from medbench.attacks.subset import SubsetMismatchError, evaluation_subset, indices_sha256, stored_subsets
from medbench.evaluate import benchmark
from medbench.protocol import CURRENT_VERSION, load_protocol
from conftest import need_real, train_small_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny models on small batches gain nothing from intra-op threads, and CI shares its 2 cores
    torch.set_num_threads(1)


def fast_protocol(n: int = 32, n_iter: int = 5, queries: int = 40):
    """The protocol with CI-sized counts (a '+custom' version); users run the full one."""
    return load_protocol().derive(**{
        "adversarial.subset_size": n, "adversarial.n_iter": n_iter, "adversarial.square_queries": queries,
        "curves.apgd_n_iter": n_iter, "clean.bootstrap_resamples": 50,
    })  # (admission always runs under the standard protocol: tests of untrained models pass checks=False)


# ----------------------------------------------------------------------------- subset

def test_stored_subsets_cover_every_small_test_split():
    stored = stored_subsets(CURRENT_VERSION)
    for name in medbench.dataset_names():
        n = medbench.get_spec(name).n_samples["test"]
        if n <= 1000:
            assert stored[name]["n"] == n and stored[name]["whole_split"]
            assert stored[name]["indices_sha256"] == indices_sha256(np.arange(n))


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["breastmnist", "pneumoniamnist", "retinamnist", "adrenalmnist3d", "vesselmnist3d"])
def test_subset_of_held_datasets_is_the_stored_one(real_root, name):
    need_real(real_root, f"{name}.npz")
    labels = medbench.load_dataset(name, "test", root=real_root).labels
    sub = evaluation_subset(name, labels, load_protocol())
    assert sub.info.whole_split and sub.info.n == len(labels)
    assert sub.info.indices_sha256 == stored_subsets(CURRENT_VERSION)[name]["indices_sha256"]


def test_large_split_gets_a_stratified_seeded_subset_and_mismatches_are_errors():
    labels = np.repeat(np.arange(9), [3000, 10, 400, 50, 700, 900, 1200, 20, 1900])
    a = evaluation_subset("pathmnist", labels, load_protocol())
    b = evaluation_subset("pathmnist", labels[::-1].copy()[::-1], load_protocol())
    assert a.info.n == 1000 and not a.info.whole_split and a.info.indices_sha256 == b.info.indices_sha256
    assert set(labels[a.indices]) == set(range(9))  # every class kept
    with pytest.raises(SubsetMismatchError, match=r"breastmnist.*differs from protocol \d+'s stored subset"):
        evaluation_subset("breastmnist", np.zeros(150, dtype=np.int64), load_protocol())


def test_chunk_store_discards_stale_partial_work(tmp_path):
    store = ChunkStore(tmp_path / "s", {"eps": 1})
    store.put("c0", a=np.arange(3))
    np.testing.assert_array_equal(ChunkStore(tmp_path / "s", {"eps": 1}).get("c0")["a"], np.arange(3))
    with pytest.warns(UserWarning, match="different configuration"):
        assert ChunkStore(tmp_path / "s", {"eps": 2}).get("c0") is None


# ----------------------------------------------------------------------------- every task kind completes

def _check_result(r, threats: list[str], n: int):
    spec = medbench.get_spec(r.dataset)
    assert set(r.adversarial) == set(threats)
    for label, adv in r.adversarial.items():
        assert adv.subset.n == n == len(adv.robust_flags) == len(adv.adv_predictions) == len(adv.broken_by)
        assert adv.config.attacks == medbench.attacks.attack_set(spec.num_classes, spec.is_3d)
        assert adv.robust_accuracy == pytest.approx(np.mean(adv.robust_flags))
        assert adv.robust_balanced_accuracy <= adv.clean_balanced_accuracy + 1e-12
        assert adv.max_perturbation <= adv.config.eps + 1e-5
        y = np.asarray(medbench.load_dataset(r.dataset, "test").labels)[adv.subset.indices]
        np.testing.assert_array_equal(np.asarray(adv.adv_predictions) == y, adv.robust_flags)
    assert [p.x * 255 for p in r.curves.apgd_ce] == pytest.approx([0, 0.5, 1, 2, 4, 8])
    assert [p.x for p in r.curves.noise] == pytest.approx([0.01, 0.02, 0.05, 0.1, 0.2])
    assert r.checks == [] and not r.admitted  # untrained models, evaluated without checks: never ranked


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("name, threats", [
    ("pneumoniamnist", ["Linf-2/255", "Linf-4/255", "L2-0.25"]),  # binary
    ("retinamnist", ["Linf-2/255", "Linf-4/255", "L2-0.25"]),  # 5 classes, RGB: APGD-T and FAB-T with 4 targets
    ("adrenalmnist3d", ["Linf-2/255", "Linf-4/255"]),  # 3D: Linf only, no Square
])
def test_every_task_kind_completes(real_root, monkeypatch, name, threats):
    need_real(real_root, f"{name}.npz")
    monkeypatch.setenv("MEDBENCH_DATA", str(real_root))
    spec = medbench.get_spec(name)
    torch.manual_seed(0)
    model = build_architecture("smallcnn", in_channels=spec.n_channels, num_classes=spec.num_classes, width=4,
                               dims=spec.dims)
    kinds = "Linf,curves" if spec.is_3d else "Linf,L2,curves"
    # an untrained model is refused by admission; the attack pipeline is what this test drives
    r = benchmark(model, name, threats=kinds, protocol=fast_protocol(24, 3, 20), progress=False, checks=False)
    _check_result(r, threats, 24)
    if spec.is_3d:
        with pytest.raises(medbench.attacks.UnsupportedTaskError, match="Linf only"):
            benchmark(model, name, threats="L2", protocol=fast_protocol(24, 3, 20), progress=False, checks=False)


# ----------------------------------------------------------------------------- resume

RESUME_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from medbench.models.architectures import build_architecture
from medbench.models.weights import load_weights
from medbench.evaluate import benchmark
from medbench.protocol import CURRENT_VERSION, load_protocol
model = load_weights(build_architecture("smallcnn", in_channels=1, num_classes=2), sys.argv[1])
protocol = load_protocol().derive(**{protocol!r})
benchmark(model, "breastmnist", threats="Linf,curves", protocol=protocol, out=sys.argv[2], batch_size=8,
          data_root=sys.argv[3], progress=False)
"""


def _comparable(result) -> dict:
    data = json.loads(result.to_json())
    for adv in data["adversarial"].values():
        adv.pop("wall_time_s")
    return {k: data[k] for k in ("clean", "adversarial", "curves", "checks")}


@pytest.mark.realdata
@pytest.mark.slow
def test_killed_run_resumes_mid_attack_with_the_same_result(real_root, breast_model, tmp_path):
    from safetensors.torch import save_file

    changes = {"adversarial.subset_size": 32, "adversarial.n_iter": 6, "adversarial.square_queries": 60,
               "curves.apgd_n_iter": 3, "clean.bootstrap_resamples": 50}
    weights = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in breast_model.state_dict().items()}, weights)
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT.replace("{protocol!r}", repr(changes)))
    out = tmp_path / "resumed.json"
    cells = Path(str(out) + ".cells")  # the run's cell store; attack checkpoints under partial/<cell id>/

    def marker():
        return next(cells.glob("partial/*/attacks/Linf-4_255/chunk00001.npz"), None)

    proc = subprocess.Popen([sys.executable, str(script), str(weights), str(out), str(real_root)], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 600
        while marker() is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert marker() is not None and not out.exists(), "the run was not interrupted mid-attack"
    kinds = {json.loads(p.read_text())["kind"] for p in cells.glob("cells/*/*.json")}
    assert "Linf" not in kinds and "clean" in kinds  # killed inside the Linf cell, after some chunks

    protocol = load_protocol().derive(**changes)
    kwargs = dict(threats="Linf,curves", protocol=protocol, batch_size=8, data_root=real_root, progress=False)
    resumed = benchmark(breast_model, "breastmnist", out=out, **kwargs)
    fresh = benchmark(breast_model, "breastmnist", out=tmp_path / "fresh.json", **kwargs)
    assert _comparable(resumed) == _comparable(fresh)
    assert out.exists() and not cells.exists()


@pytest.mark.realdata
def test_interrupted_chunk_resumes_after_its_last_finished_attack(real_root, breast_model, tmp_path, monkeypatch):
    """Interrupted inside a chunk, after its first attack: the re-run starts that chunk at its second attack
    (the first is not run again) and gives an uninterrupted run's result."""
    from medbench.attacks.progress import AttackProgress

    need_real(real_root, "breastmnist.npz")
    kwargs = dict(threats="Linf", protocol=fast_protocol(24, 4, 30), batch_size=12, data_root=real_root,
                  progress=False, checks=False)
    started: list[tuple[str, str]] = []
    start, done = AttackProgress.start, AttackProgress.done

    def record(self, attack, n_attacked, n_chunk):
        started.append((self.label, self._chunk, attack))
        return start(self, attack, n_attacked, n_chunk)

    def interrupt(self, attack, n_attacked, n_left):
        if self.label.startswith("Linf-4/255") and self._chunk == 1:
            raise KeyboardInterrupt  # after the chunk's first attack: its state is checkpointed already
        return done(self, attack, n_attacked, n_left)

    monkeypatch.setattr(AttackProgress, "start", record)
    monkeypatch.setattr(AttackProgress, "done", interrupt)
    out = tmp_path / "resumed.json"
    with pytest.raises(KeyboardInterrupt):
        benchmark(breast_model, "breastmnist", out=out, **kwargs)
    first = [a for label, chunk, a in started if label.startswith("Linf-4/255") and chunk == 1]
    assert first == ["apgd-ce"] and not out.exists()
    assert list(Path(str(out) + ".cells").glob("partial/*/attacks/Linf-4_255/chunk00001.partial.npz"))

    monkeypatch.setattr(AttackProgress, "done", done)
    started.clear()
    resumed = benchmark(breast_model, "breastmnist", out=out, **kwargs)
    again = [a for label, chunk, a in started if label.startswith("Linf-4/255") and chunk == 1]
    assert again == ["fab-t", "square"]  # apgd-ce is not run again on the interrupted chunk
    fresh = benchmark(breast_model, "breastmnist", out=tmp_path / "fresh.json", **kwargs)
    assert _comparable(resumed) == _comparable(fresh)
    assert not list(tmp_path.glob("**/*.partial.npz"))


# ----------------------------------------------------------------------------- robust vs standard

@pytest.mark.realdata
@pytest.mark.slow
def test_robust_and_standard_models_differ_and_pass_every_check(real_root, breast_model):
    """The issue's 'done when': a small adversarially trained and a small standard model on real
    BreastMNIST show clearly different robust balanced accuracy and curves; all checks pass."""
    robust_model = train_small_model(real_root, "breastmnist", epochs=6, adversarial_eps=4 / 255)
    protocol = fast_protocol(48, 10, 100)
    results = {name: benchmark(m, "breastmnist", threats="Linf,curves", protocol=protocol, data_root=real_root,
                               progress=False)
               for name, m in (("standard", breast_model), ("robust", robust_model))}
    for r in results.values():
        failed = [f"{c.name}: {c.message}" for c in r.checks if not c.passed]
        assert not failed, failed
        assert {c.name for c in r.checks if c.kind == "sanity"} >= {
            "finite_under_attack", "apgd_curve_non_increasing", "robust_le_clean", "whitebox_beats_square",
            "whitebox_beats_fgsm", "whitebox_beats_noise", "chance_at_largest_eps"}
    std, rob = (results[k].adversarial["Linf-2/255"].robust_balanced_accuracy for k in ("standard", "robust"))
    assert rob >= std + 0.15, (std, rob)
    std_curve, rob_curve = ([p.balanced_accuracy for p in results[k].curves.apgd_ce] for k in ("standard", "robust"))
    assert rob_curve[3] >= std_curve[3] + 0.15 and rob_curve[4] >= std_curve[4] + 0.15, (std_curve, rob_curve)
