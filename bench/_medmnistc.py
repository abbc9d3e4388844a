"""Run the ORIGINAL MedMNIST-C package (``medmnistc`` 0.1.0) in its own virtual environment.

medmnistc pins old medmnist / scikit-image and breaks on numpy >= 2.3, so it never enters
medbench's environment: :func:`run_original` starts this same file under the interpreter of a
separate venv (``$MEDBENCH_MEDMNISTC_PYTHON``, default ``/work/venv-medmnistc/bin/python``) and
exchanges plain uint8 arrays through ``.npz`` files (loaded with ``allow_pickle=False``).

The worker follows the original's calling protocol (``DatasetManager.create_single_dataset``)
image by image: ``Image.fromarray(x).convert('RGB')``, ``apply(img, severity - 1)``, then
``convert('L')`` for the grey datasets, then ``np.array``. Each (corruption, severity) cell is
seeded like ``DatasetManager`` seeds a dataset (``seed_everything(seed)``; ImpulseNoise's
``rng`` is the generator it returns). It also reports each cell's CPU time.

Used by tests/test_corruptions_fidelity.py and bench/medmnistc_fidelity.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_PYTHON = "/work/venv-medmnistc/bin/python"
ENV_VAR = "MEDBENCH_MEDMNISTC_PYTHON"


class OriginalUnavailable(RuntimeError):
    """The original package cannot be run here (no interpreter, or it fails to import)."""


def original_python() -> str | None:
    """The interpreter of the venv holding ``medmnistc``: $MEDBENCH_MEDMNISTC_PYTHON, else the default if present."""
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    return DEFAULT_PYTHON if Path(DEFAULT_PYTHON).is_file() else None


def _call(args: list[str], timeout: float) -> None:
    py = original_python()
    if py is None:
        raise OriginalUnavailable(f"no interpreter with medmnistc: set {ENV_VAR} to the python of a venv made with "
                                  f"`pip install torch==2.13.0 medmnistc 'numpy<2.3'` ({DEFAULT_PYTHON} is absent)")
    if not Path(py).is_file():
        raise OriginalUnavailable(f"{ENV_VAR}={py} does not exist")
    try:
        proc = subprocess.run([py, str(Path(__file__).resolve()), *args], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise OriginalUnavailable(f"the original medmnistc did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise OriginalUnavailable(f"running medmnistc with {py} failed: {' | '.join(tail)}")


def probe(timeout: float = 120) -> str | None:
    """None when the original package imports and runs; otherwise the reason it cannot."""
    try:
        _call(["--probe"], timeout)
    except OriginalUnavailable as e:
        return str(e)
    return None


def run_original(images, dataset: str, cells: list[tuple[str, int]], *, seed: int = 0,
                 timeout: float = 1800) -> tuple[dict, dict, dict]:
    """Corrupt ``images`` (uint8 ``N x H x W`` grey or ``N x H x W x 3`` RGB) with the original package.

    ``cells`` are (corruption, severity 1..5) of ``dataset``'s MedMNIST-C set. Returns
    ({cell: uint8 array shaped like ``images``}, {cell: CPU seconds the original spent on it},
    {corruption: the original's five severity parameters for ``dataset``, and ``"_inks"``: its
    stain_deposit ink masks {24: ..., 32: ...}}).
    """
    import numpy as np

    images = np.ascontiguousarray(images, dtype=np.uint8)
    spec = {"dataset": dataset, "cells": [[c, int(s)] for c, s in cells], "seed": int(seed)}
    with tempfile.TemporaryDirectory(prefix="medmnistc-") as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, images=images, spec=np.array(json.dumps(spec)))
        _call([str(src), str(dst)], timeout)
        out, cpu = {}, {}
        with np.load(dst, allow_pickle=False) as z:
            for c, s in cells:
                out[(c, s)] = z[f"{c}/{s}"].copy()
                cpu[(c, s)] = float(z[f"cpu/{c}/{s}"])
            params = json.loads(str(z["params"]))
            params["_inks"] = {24: z["inks/3"].copy(), 32: z["inks/4"].copy()}
    return out, cpu, params


class Replay:
    """The original's random draws for one (corruption, severity) cell, served to medbench's operations.

    The worker seeds Python's ``random``, NumPy's legacy global state and a ``default_rng`` with the
    same seed for every cell, and the original then draws image after image from them. medbench's
    operations draw per image from a ``numpy.random.Generator`` in the same order; passing one
    ``Replay`` as every image's generator makes them consume exactly the original's numbers:
    ``integers`` from ``random.randint`` (shapes, text), ``uniform`` / ``standard_normal`` /
    ``poisson`` from ``np.random`` (motion angles, noises), ``random`` from the generator
    (scikit-image's salt and pepper). Arrays are drawn in the original's H x W x C order.
    """

    def __init__(self, seed: int = 0):
        import random

        import numpy as np

        self._py = random.Random(seed)
        self._legacy = np.random.RandomState(seed)
        self._gen = np.random.default_rng(seed)

    def integers(self, low: int, high: int, size=None):
        if size is not None:
            raise TypeError("Replay serves scalar integers only (the original draws them one by one)")
        return self._py.randint(int(low), int(high) - 1)

    def uniform(self, low: float, high: float):
        return self._legacy.uniform(low, high)

    def standard_normal(self, shape):
        return self._legacy.standard_normal((*shape[1:], shape[0])).transpose(2, 0, 1)

    def poisson(self, lam):
        return self._legacy.poisson(lam.transpose(1, 2, 0)).transpose(2, 0, 1)

    def random(self, shape):
        return self._gen.random((*shape[1:], shape[0])).transpose(2, 0, 1)


# ------------------------------------------------------------------ worker (runs in the medmnistc venv)


def _import_medmnistc():
    # medmnistc imports torchvision.transforms.functional; with a CPU torch the PyPI torchvision's
    # _C.so fails to load and registering its fake kernels raises "operator torchvision::nms does
    # not exist". Declaring the two ops' schemas first lets the import finish (medmnistc only uses
    # torchvision's pure-torch functions).
    import torch

    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _import_medmnistc.keep = lib  # the definitions live as long as the library object
    from medmnistc.corruptions.registry import CORRUPTIONS_DS, DATASET_RGB
    from medmnistc.utils.utils import seed_everything
    return CORRUPTIONS_DS, DATASET_RGB, seed_everything


def _worker(src: str, dst: str) -> None:
    import numpy as np
    from PIL import Image

    corruptions, is_rgb, seed_everything = _import_medmnistc()
    with np.load(src, allow_pickle=False) as z:
        images = z["images"]
        spec = json.loads(str(z["spec"]))
    ds = spec["dataset"]
    if ds not in corruptions:
        raise SystemExit(f"medmnistc has no dataset {ds!r}")
    def plain(v):  # severity parameters as JSON (zoom_blur's are arrays of zoom factors)
        return [plain(u) for u in v] if isinstance(v, (list, tuple, np.ndarray)) else float(v)

    out = {"params": np.array(json.dumps({n: plain(c.severity_params[:5]) for n, c in corruptions[ds].items()}))}
    inks = corruptions["pathmnist"]["stain_deposit"].inks  # plain integer arrays: no pickle needed
    out.update({f"inks/{k}": np.asarray(inks[k], dtype=np.uint8) for k in ("3", "4")})
    for name, sev in spec["cells"]:
        corruptor = corruptions[ds][name]
        rng = seed_everything(spec["seed"])
        corruptor.rng = rng  # ImpulseNoise reads self.rng, which only DatasetManager sets
        t0 = time.process_time()
        res = []
        for x in images:
            img = Image.fromarray(x).convert("RGB")
            y = corruptor.apply(img, sev - 1)
            if not is_rgb[ds]:
                y = Image.fromarray(y).convert("L")
            res.append(np.array(y))
        out[f"cpu/{name}/{sev}"] = np.array(time.process_time() - t0)
        out[f"{name}/{sev}"] = np.stack(res).astype(np.uint8)
    np.savez(dst, **out)


if __name__ == "__main__":
    if sys.argv[1:] == ["--probe"]:
        import numpy as np
        from PIL import Image

        c, _, seed_everything = _import_medmnistc()
        seed_everything(0)
        c["dermamnist"]["motion_blur"].apply(Image.fromarray(np.zeros((224, 224, 3), np.uint8)), 0)
    else:
        _worker(*sys.argv[1:3])
