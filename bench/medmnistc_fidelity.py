"""Fidelity of medbench's 2D MedMNIST-C operations to the original ``medmnistc`` 0.1.0, at 224 px.

Both implementations corrupt the same real images (test split, 28 -> 224 px with Pillow bicubic,
as scripts/calibrate_corruptions.py does: grey = pneumoniamnist + breastmnist, RGB = retinamnist;
each dataset's corruption set runs on the family of its images), with the protocol's 224-px
parameters on medbench's side and the original's own registry on the other (the parameter lists
themselves are compared too). Per dataset x corruption x severity:
- deterministic operations must be pixel-exact (max |medbench - original| == 0), up to rounding
  ties (at most 0.1% of values one level apart, from a different floating-point summation order);
- random ones (noise, random angles, random shapes) run twice: with medbench's own random streams
  (reported), and with the original's random draws replayed through medbench's operation
  (``_medmnistc.Replay``), which makes them comparable pixel by pixel. The verdict is on the
  replayed run: pixel-exact, or PSNR against the clean image (from the MSE averaged over the
  images) within ``tolerance`` dB of the original's.
The original runs in its own venv (bench/_medmnistc.py). Writes bench/results/medmnistc_fidelity.json.
Usage: MEDBENCH_DATA=../shared/data/medmnist python bench/medmnistc_fidelity.py [--images 16]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import _medmnistc  # noqa: E402

import medbench  # noqa: E402
from medbench.corruptions import corrupt, corruption_parameters  # noqa: E402
from medbench.corruptions.ops2d import OPS_2D  # noqa: E402
from medbench.corruptions.params import op_name  # noqa: E402
from medbench.corruptions.registry import PUBLISHED_224, zoom_factors  # noqa: E402
from medbench.paths import data_root  # noqa: E402
from medbench.protocol import load_protocol  # noqa: E402

RANDOM_OPS = {"gaussian_noise", "speckle_noise", "impulse_noise", "shot_noise", "motion_blur", "stain_deposit",
              "bubble", "characters"}
# |PSNR(medbench) - PSNR(original)| allowed for random operations, dB (issue 12: 0.2, drawn text / ink 1.0)
TOLERANCE_DB = {"characters": 1.0, "stain_deposit": 1.0}
DEFAULT_TOLERANCE_DB = 0.2
DETERMINISTIC_TIES = 1e-3  # deterministic cells: at most this fraction of values one level apart
GREY_SOURCES = ("pneumoniamnist", "breastmnist")
RGB_SOURCES = ("retinamnist",)


def load_images(root: Path, sources: tuple[str, ...], n: int, seed: int = 0) -> np.ndarray:
    """``n`` test images per source file, upsampled 28 -> 224 with Pillow bicubic (HW or HWC uint8)."""
    out = []
    for src in sources:
        split = medbench.load_dataset(src, "test", 28, root)
        idx = np.sort(np.random.default_rng(seed).choice(len(split), n, replace=False))
        for i in idx:
            a = split.images[int(i)].numpy()
            img = Image.fromarray(a[0]) if a.shape[0] == 1 else Image.fromarray(a.transpose(1, 2, 0))
            out.append(np.asarray(img.resize((224, 224), Image.BICUBIC)))
    return np.stack(out)


def psnr(a: np.ndarray, clean: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - clean.astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def _named(corruption: str, p: dict) -> list | float:
    """medbench's named parameters in the original's positional form."""
    if corruption == "zoom_blur":
        return [float(v) for v in zoom_factors(p)]
    vals = [float(v) for k, v in p.items() if k != "ink_size"]
    return vals[0] if len(vals) == 1 else vals


def _hwc(y: torch.Tensor, like: np.ndarray) -> np.ndarray:
    return y.numpy()[:, 0] if like.ndim == 3 else y.numpy().transpose(0, 2, 3, 1)


def compare(dataset: str, images: np.ndarray, corruptions: list[str] | None = None,
            severities=(1, 2, 3, 4, 5), seed: int = 0) -> list[dict]:
    """One row per (corruption, severity) of ``dataset``: medbench against the original on ``images``."""
    spec = medbench.get_spec(dataset)
    params = corruption_parameters(spec, 224, load_protocol())
    names = corruptions or list(params)
    cells = [(c, s) for c in names for s in severities]
    original, cpu, original_params = _medmnistc.run_original(images, dataset, cells, seed=seed)
    x = torch.from_numpy(images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2).copy())
    rows = []
    for c, s in cells:
        p = params[c][s - 1]
        t0 = time.process_time()
        y = corrupt(x, spec, c, s, p, seed=seed)
        ours_cpu = time.process_time() - t0
        ref = original[(c, s)]
        p_ref = psnr(ref, images)
        row = {"dataset": dataset, "corruption": c, "severity": s, "params": p,
               "same_params_as_original": bool(np.allclose(_named(c, p), original_params[c][s - 1])),
               "random": c in RANDOM_OPS, "psnr_original_db": round(p_ref, 3)}
        if c in RANDOM_OPS:
            # medbench's own random streams: the strength comparison
            p_own = psnr(_hwc(y, images), images)
            row["psnr_medbench_own_draws_db"] = round(p_own, 3)
            # the original's random draws replayed through medbench's operation: pixel comparison
            y = OPS_2D[op_name(spec, c)](x, p, [_medmnistc.Replay(seed)] * len(x))
        ours = _hwc(y, images)
        diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
        p_ours = psnr(ours, images)
        row.update({"max_abs_diff": int(diff.max()), "frac_pixels_differ": float((diff > 0).mean()),
                    "psnr_medbench_db": round(p_ours, 3),
                    "psnr_delta_db": round(p_ours - p_ref, 3) if math.isfinite(p_ours - p_ref) else 0.0,
                    "cpu_s_medbench": round(ours_cpu, 4), "cpu_s_original": round(cpu[(c, s)], 4)})
        if c in RANDOM_OPS:
            tol = TOLERANCE_DB.get(c, DEFAULT_TOLERANCE_DB)
            row["tolerance_db"] = tol
            ok = abs(row["psnr_delta_db"]) <= tol
            row["verdict"] = ("exact" if row["max_abs_diff"] == 0 else "within tolerance") if ok else "off"
        else:
            # a different summation order (cv2's DFT filter for large kernels) may land a value that
            # lies on an integer a hair below it: truncation then differs by one level, rarely
            tie = row["max_abs_diff"] <= 1 and row["frac_pixels_differ"] <= DETERMINISTIC_TIES
            row["verdict"] = "exact" if row["max_abs_diff"] == 0 else ("within tolerance" if tie else "off")
        if c == "stain_deposit":  # the vendored ink masks must be the original's
            from medbench.corruptions.inks import inks

            row["same_inks_as_original"] = all(np.array_equal(inks(k), v) for k, v in original_params["_inks"].items())
        if not row["same_params_as_original"] or not row.get("same_inks_as_original", True):
            row["verdict"] = "off"
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=16, help="test images per source file (default 16)")
    ap.add_argument("--datasets", nargs="*", default=sorted(PUBLISHED_224))
    args = ap.parse_args()
    reason = _medmnistc.probe()
    if reason:
        raise SystemExit(f"cannot run the original medmnistc: {reason}")
    root = data_root()
    grey, rgb = load_images(root, GREY_SOURCES, args.images), load_images(root, RGB_SOURCES, args.images)
    rows = []
    t0 = time.time()
    for ds in args.datasets:
        spec = medbench.get_spec(ds)
        rows += compare(ds, rgb if spec.n_channels == 3 else grey)
        print(f"{ds}: {sum(r['verdict'] != 'off' for r in rows if r['dataset'] == ds)}/"
              f"{sum(r['dataset'] == ds for r in rows)} cells within tolerance ({time.time() - t0:.0f} s)", flush=True)
    summary = {v: sum(r["verdict"] == v for r in rows) for v in ("exact", "within tolerance", "off")}
    off = [f"{r['dataset']}/{r['corruption']}/s{r['severity']}" for r in rows if r["verdict"] == "off"]
    path = _common.write("medmnistc_fidelity", {
        "command": "python bench/medmnistc_fidelity.py " + " ".join(sys.argv[1:]),
        "images": {"grey": [*GREY_SOURCES], "rgb": [*RGB_SOURCES], "per_source": args.images, "size": 224,
                   "upsampling": "Pillow bicubic 28 -> 224, test split"},
        "tolerance_db": {"default_random": DEFAULT_TOLERANCE_DB, **TOLERANCE_DB},
        "rule": "deterministic: pixel-exact (within tolerance: max |diff| 1 on at most 0.1% of values, float "
                "summation-order ties); random: the original's draws replayed through medbench's operation, "
                "pixel-exact or |PSNR(medbench) - PSNR(original)| <= tolerance (PSNR vs the clean image from the MSE "
                "averaged over the images); parameters must equal the original's",
        "summary": summary, "off": off, "cells": rows})
    print(f"{summary}; wrote {path}")
    for o in off:
        r = next(r for r in rows if f"{r['dataset']}/{r['corruption']}/s{r['severity']}" == o)
        print(f"  off {o}: max|d|={r['max_abs_diff']} frac={r['frac_pixels_differ']:.3f} "
              f"psnr ours {r['psnr_medbench_db']} orig {r['psnr_original_db']} same_params={r['same_params_as_original']}")


if __name__ == "__main__":
    main()
