"""Shared fixtures: the real data folder, synthetic MedMNIST files, and small trained models."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import medbench.paths  # noqa: F401  (a relative $MEDBENCH_DATA is made absolute before any test changes directory)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "medmnist"


def real_data_root() -> Path | None:
    """The folder with the real MedMNIST files: $MEDBENCH_DATA if it has them, else ../shared/data/medmnist."""
    env = os.environ.get("MEDBENCH_DATA")
    for cand in ([Path(env)] if env else []) + [SHARED_DATA]:
        if cand.is_dir() and any(cand.glob("*.npz")):
            return cand
    return None


@pytest.fixture(scope="session")
def real_root() -> Path:
    root = real_data_root()
    if root is None:
        pytest.skip("real MedMNIST files are absent (../shared/data/medmnist)")
    return root


def need_real(root: Path, *names: str) -> None:
    for name in names:
        if not (root / name).is_file():
            pytest.skip(f"{name} is absent from {root}")


@pytest.fixture(scope="session", autouse=True)
def _allow_loopback():
    """The loopback Hub (tests/hub_server.py) serves on 127.0.0.1; medbench accepts loopback URLs only when
    MEDBENCH_ALLOW_LOOPBACK=1, which only the test suite sets (session-wide: module fixtures parse entries too)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDBENCH_ALLOW_LOOPBACK", "1")
        yield


def torch_threads() -> int:
    """Intra-op threads per test process: the cores shared among pytest-xdist's workers (at least one)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(2, (os.cpu_count() or 1) // workers))


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per core, plus one. A fair share of the suite waits rather than computes (CLI and
    pool sub-processes starting, the Hub client's retry back-off, site files written): a third worker on two
    cores runs while another waits."""
    return (os.cpu_count() or 1) + 1


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # keep the order below (xdist would sort files by test count)
        config.option.loadscopereorder = False
    if "PYTEST_XDIST_WORKER" in os.environ:  # subprocesses of a worker (CLI runs, pools) share its cores too
        os.environ["OMP_NUM_THREADS"] = str(torch_threads())


def pytest_collection_modifyitems(config, items):
    """Files with the most slow (or browser) tests first, each file's tests kept together and in order:
    pytest-xdist's ``--dist loadfile`` hands out whole files in this order, so the long ones start early
    and no worker is left alone with one at the end (longest-first scheduling)."""
    heavy = Counter(item.path for item in items
                    if item.get_closest_marker("slow") or item.get_closest_marker("browser"))
    first_seen = {path: i for i, path in reversed(list(enumerate(item.path for item in items)))}
    items.sort(key=lambda item: (-heavy[item.path], first_seen[item.path]))


@pytest.fixture(autouse=True)
def _isolate_caches(tmp_path_factory, monkeypatch):
    """Never write into the user's home: caches go to a per-session temporary folder (per xdist worker:
    getbasetemp() is the worker's own folder, so workers never race on one cache)."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("MEDBENCH_CACHE", str(base / "medbench-cache"))
    monkeypatch.setenv("HF_HOME", str(base / "hf-home"))
    torch.set_num_threads(torch_threads())


def train_small_model(root: Path, dataset: str, *, epochs: int = 8, arch: str = "smallcnn", seed: int = 0,
                      adversarial_eps: float = 0.0, **arch_kwargs) -> torch.nn.Module:
    """Train a small model on the real train split (plain or FGSM-style adversarial), for tests."""
    import medbench
    from medbench.models.architectures import build_architecture

    torch.manual_seed(seed)
    spec = medbench.get_spec(dataset)
    images, labels = medbench.load_dataset(dataset, "train", root=root)
    x = images.float() / 255
    y = torch.as_tensor(labels)
    model = build_architecture(arch, in_channels=spec.n_channels, num_classes=spec.num_classes, **arch_kwargs)
    weight = torch.as_tensor(len(y) / (spec.num_classes * np.bincount(y.numpy(), minlength=spec.num_classes)),
                             dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y), generator=g).split(64):
            xb, yb = x[idx], y[idx]
            if adversarial_eps > 0:  # 2-step PGD adversarial training
                delta = torch.zeros_like(xb, requires_grad=True)
                for _ in range(2):
                    loss = torch.nn.functional.cross_entropy(model(xb + delta), yb)
                    (grad,) = torch.autograd.grad(loss, delta)
                    delta = (delta + adversarial_eps * 0.75 * grad.sign()).clamp(-adversarial_eps, adversarial_eps)
                    delta = ((xb + delta).clamp(0, 1) - xb).detach().requires_grad_(True)
                xb = (xb + delta).detach()
            loss = torch.nn.functional.cross_entropy(model(xb), yb, weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def breast_model(real_root):
    """A small CNN trained for a few epochs on real BreastMNIST (seconds on a CPU)."""
    need_real(real_root, "breastmnist.npz")
    return train_small_model(real_root, "breastmnist", epochs=10)


def write_fake_medmnist(folder: Path, name: str, size: int = 28, n: tuple[int, int, int] | None = None,
                        seed: int = 0) -> Path:
    """Write a synthetic .npz with the real keys, dtypes and shapes of ``name`` (sizes from medmnist.INFO
    unless ``n`` is given). Returns its path. Its MD5 will not match medmnist's: load it with verify=False."""
    import medbench

    spec = medbench.get_spec(name)
    rng = np.random.default_rng(seed)
    counts = n or (spec.n_samples["train"], spec.n_samples["val"], spec.n_samples["test"])
    arrays = {}
    for split, count in zip(("train", "val", "test"), counts):
        if spec.is_3d:
            shape = (count, size, size, size)
        elif spec.n_channels == 3:
            shape = (count, size, size, 3)
        else:
            shape = (count, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        if spec.is_multilabel:
            arrays[f"{split}_labels"] = rng.integers(0, 2, (count, spec.num_classes)).astype(np.uint8)
        else:
            arrays[f"{split}_labels"] = (np.arange(count) % spec.num_classes).reshape(-1, 1).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.filename(size)
    np.savez_compressed(path, **arrays)
    return path
