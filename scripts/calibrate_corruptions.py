#!/usr/bin/env python
"""Calibrate the MedMNIST-C parameters for 28, 64 and 128 px; write medbench/protocols/v<current>_corruptions.yaml.

Goal: corrupting an image at size s has the same effect as corrupting it at 224 px (where the
published parameters were chosen) and then resizing to s, which is what a user of the official
224-px corrupted sets sees after resizing them.

Measurement, per dataset, corruption, severity and size s:
  P      = 224-px images: real training images of the dataset (or of a stand-in with the same
           number of channels when its files are absent) upsampled with Pillow's bicubic filter
           (no 224-px MedMNIST files are available offline; this is the closest honest proxy).
  R      = P area-resized to s (uint8), the clean image at size s.
  target = mean over images of RMSE(area_resize(C_224(P)), R), in 0..255 units.
  C_s    = the same corruption at size s with parameter t; t is chosen so that
           mean RMSE(C_s(R; t), R) is as close as possible to the target.
At 28 px the candidates are measured on the real 28-px images (what the benchmark corrupts); at
64 and 128 px on R.
Corruptions of pixel intensity (brightness, contrast, gamma, saturate), zoom blur (relative
zoom factors) and the drawn ones (bubble, stain_deposit, black_corner, characters, drawn in
224-px geometry) act the same at every size by construction; they keep the published
parameters where those are admissible (below), and the same RMSE measurement is recorded.
Admissible (issue 12: every corruption must do something, and more at each severity): every
severity changes >= 90% of the images with mean |delta| >= 0.3 grey levels, and each severity's
mean |delta| is >= 1.15x the previous one's (and its RMSE larger). Where the 224-px-equivalent
strength is below that (weak severities at 28 px: pixelate and jpeg differ by less than a pixel of
resolution, a 3x3 blur vanishes) or the published order is broken (dermamnist black_corner 4-5,
bloodmnist stain_deposit 3-5), the weakest admissible candidate is taken and the severity is listed
under ``adjusted_severities``. The script fails (exit 1) if a severity has no admissible candidate.
Pixelate's effect is not monotone in its factor near 1 and depends on the image (at 64 px, 64 -> 61 px
is stronger than 64 -> 60 px on BreastMNIST, weaker on RetinaMNIST): its severities must also lower the
PSNR by at least ``ORDER_STEP_DB`` on ``--order-images`` training images of EVERY real 2D file present
(both channel families, since any suite's parameters may meet any image), both the PSNR of the pooled
MSE and the mean per-image PSNR, at 64 / 128 px on both stand-ins for real images at that size (the
224-px proxy area-resized, and the 28-px images bicubic-upsampled; ``<file>/bicubic``); the pooled
values are recorded as ``order_psnr_db``.
Impulse noise at low resolution averages ``subpixels`` 224-px pixels per pixel (ops2d.impulse_subpixels):
at the matching strength, plain salt and pepper at 28 px flips under one pixel per image.
Defocus blur keeps the disk radius scaled by size/224 and calibrates its alias blur, because a
hard-edged disk below one pixel of radius jumps from the identity to a 5-pixel cross.
The 3D suite is defined at 28 px; at 64 px its spatial parameters (blur sigma, surface depth) scale
with the size. Which corruptions each kind of 3D volume gets (intensity volumes or binary masks) is
written with the reason, and the suite's effect (fraction of voxels changed, mean |delta|) is measured
on the 3D files present, as a record that every corruption acts at every severity.

Cost: about 2 CPU-minutes with the defaults (24 images, 120 candidates per continuous family).
Usage: python scripts/calibrate_corruptions.py [--data-root DIR] [--images 24] [--candidates 120] [--out PATH]
       [--order-images 128] [--datasets NAME ...] [--corruptions NAME ...] [--volumes 64] [--only-3d]
(--datasets / --corruptions re-calibrate only those 2D tables and keep the rest of the file, 3D included.)
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import yaml
from PIL import Image
from tqdm import tqdm

import medbench
from medbench.corruptions.common import area_resize, image_rngs, quantize
from medbench.corruptions.ops2d import OPS_2D, gaussian_blur_params
from medbench.corruptions.registry import CORRUPTION_OPS_2D, PUBLISHED_224, SPATIAL_3D, SUITE_3D_28, SUITES_3D
from medbench.paths import data_root
from medbench.protocol import CURRENT_VERSION

SIZES = (28, 64, 128)
INVARIANT = {"brightness_up", "brightness_down", "contrast_up", "contrast_down", "saturate", "gamma_corr_up",
             "gamma_corr_down", "zoom_blur", "bubble", "stain_deposit", "black_corner", "characters"}
DISCRETE = {"pixelate", "jpeg_compression"}
OUT = Path(__file__).resolve().parents[1] / "medbench" / "protocols" / f"v{CURRENT_VERSION}_corruptions.yaml"
SEED = 12345  # the calibration's own noise stream (never the benchmark's)
# Every severity must change its input measurably and be stronger than the one before (issue 12):
MIN_MEAN_ABS_DELTA = 0.3  # grey levels (0..255), mean |corrupted - clean| over all pixels of the images
MIN_CHANGED = 0.9  # fraction of the images with at least one pixel changed
STEP = 1.15  # each severity's mean |delta| at least 15 % above the previous one's (and its RMSE above too)
# Corruptions whose effect is not monotone in the parameter and whose order changes with the image content:
# each severity must lower the PSNR by ORDER_STEP_DB on the training images of every real file (protocol 3)
ORDERED = {"pixelate"}
ORDER_STEP_DB = 0.3


def _r(v: float) -> float:
    """Round to 4 significant digits for the protocol file."""
    return float(f"{float(v):.4g}")


def subpixels(size: int) -> int:
    """224-px pixels per pixel at ``size`` (low-resolution impulse noise, see ops2d.impulse_subpixels)."""
    return max(1, round((224 / size) ** 2))


def _dedupe(cands: list[dict]) -> list[dict]:
    seen, out = set(), []
    for c in cands:
        key = tuple(sorted(c.items()))
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def candidates(name: str, p224: dict, size: int, n: int = 120) -> list[dict]:
    """Parameters at ``size``, ordered from the weakest to the strongest corruption (``n`` per continuous family)."""
    if name == "pixelate":  # one candidate per distinct downscaled size, from size-1 down to 1
        return [{"factor": _r((k + 0.5) / size)} for k in range(size - 1, 0, -1)]
    if name == "jpeg_compression":
        return [{"quality": q} for q in range(95, 0, -1)]
    ts = np.geomspace(1e-3, 2.0, n)
    if name in ("gaussian_noise", "speckle_noise"):
        return [{"sigma": _r(p224["sigma"] * t)} for t in ts]
    if name == "impulse_noise":
        return [{"amount": _r(p224["amount"] * t), "subpixels": subpixels(size)} for t in np.geomspace(1e-2, 4.0, n)]
    if name == "shot_noise":  # fewer photons is stronger
        return [{"photons": _r(p224["photons"] * f)} for f in np.geomspace(2000, 0.5, n)]
    if name == "defocus_blur":  # disk radius scales with the geometry; its (continuous) alias blur is calibrated
        r = _r(p224["radius"] * size / 224)
        cands = [{"radius": r, "alias_blur": _r(a)} for a in np.linspace(0.01, 3.0, n)]
        # then, where the largest alias blur is still too weak (sub-pixel disks), larger disks
        return cands + [{"radius": _r(q), "alias_blur": 3.0} for q in np.linspace(1.0, 4.0, n // 4) if q > r]
    ts = np.linspace(0.01, 1.2, n)
    if name == "motion_blur":
        return [{"radius": _r(p224["radius"] * t), "sigma": _r(p224["sigma"] * t)} for t in ts]
    if name == "gaussian_blur":
        sigma, radius = gaussian_blur_params(p224)
        return [{"sigma": _r(sigma * t), "radius": max(1, math.ceil(radius * t))} for t in ts]
    # the size-invariant ones: used only where the published parameters break the severity order
    ts = np.linspace(0.05, 3.0, n)
    key = next(iter(p224))
    if name in ("brightness_up", "brightness_down", "contrast_up", "contrast_down", "gamma_corr_up", "gamma_corr_down"):
        return _dedupe([{key: _r(max(0.05, 1 + (p224[key] - 1) * t))} for t in ts])
    if name == "saturate":
        return _dedupe([{"shift": _r(min(1.0, p224["shift"] * t))} for t in ts])
    if name == "zoom_blur":
        return _dedupe([{"stop": _r(1 + (p224["stop"] - 1) * t), "step": p224["step"]} for t in ts])
    if name == "black_corner":  # a smaller disc blackens more
        return [{"radius_scale": _r(r)} for r in np.linspace(1.42, 0.5, n)]
    if name == "stain_deposit":
        return [{**p224, "max_marks": m} for m in range(1, 11)]
    if name == "bubble":
        return [{"max_radius": r, "max_bubbles": max(7, int(p224["max_bubbles"]))} for r in range(3, 41)]
    if name == "characters":
        return [{"max_words": k, "max_letters": min(5 + k, 12), "max_font_scale": _r(0.13 + 0.01 * min(k, 12))}
                for k in range(1, 81)]  # the original's thin lettering: many words for a small mean |delta|
    raise KeyError(name)


class Effect(NamedTuple):
    rmse: float  # mean per-image RMSE, grey levels
    mad: float  # mean |delta| over all pixels, grey levels
    changed: float  # fraction of images with a changed pixel


def measure(a: torch.Tensor, b: torch.Tensor) -> Effect:
    d = a.double() - b.double()
    return Effect(float(d.pow(2).flatten(1).mean(1).sqrt().mean()), float(d.abs().mean()),
                  float((d.flatten(1).abs().amax(1) > 0).double().mean()))


def upsample_224(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``N x C x 28 x 28`` -> ``N x C x 224 x 224`` with Pillow's bicubic filter (the 224-px proxy)."""
    up = []
    for a in images.numpy():
        img = Image.fromarray(a[0]) if a.shape[0] == 1 else Image.fromarray(a.transpose(1, 2, 0))
        b = np.asarray(img.resize((224, 224), Image.BICUBIC))
        up.append(b[None] if b.ndim == 2 else b.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(up))


def proxy_at(images28: torch.Tensor, size: int, chunk: int = 32) -> torch.Tensor:
    """Real 28-px images as the calibration sees them at ``size``: themselves at 28 px, else upsampled to
    224 px and area-resized to ``size`` (in chunks: a few MB at a time)."""
    if size == 28:
        return images28
    return torch.cat([quantize(area_resize(upsample_224(images28[i:i + chunk]).double() / 255, size))
                      for i in range(0, len(images28), chunk)])


def bicubic_at(images28: torch.Tensor, size: int) -> torch.Tensor:
    """Real 28-px images upsampled straight to ``size`` with Pillow's bicubic filter (the other stand-in)."""
    up = []
    for a in images28.numpy():
        img = Image.fromarray(a[0]) if a.shape[0] == 1 else Image.fromarray(a.transpose(1, 2, 0))
        b = np.asarray(img.resize((size, size), Image.BICUBIC))
        up.append(b[None] if b.ndim == 2 else b.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(up))


def psnr_db(corrupted: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    """(PSNR of the MSE over all pixels of all images, mean of the per-image PSNRs), dB."""
    mse = (corrupted.double() - clean.double()).pow(2).flatten(1).mean(1)
    per_image = 10 * torch.log10(255.0 ** 2 / mse)  # inf for an unchanged image
    pooled = float(mse.mean())
    return (math.inf if pooled == 0 else 10 * math.log10(255.0 ** 2 / pooled)), float(per_image.mean())


class Calibrator:
    def __init__(self, root: Path, n_images: int, n_candidates: int = 120, n_order_images: int = 128):
        self.root, self.n, self.n_candidates, self.n_order = root, n_images, n_candidates, n_order_images
        self._images: dict[str, torch.Tensor] = {}
        self._real28: dict[str, torch.Tensor] = {}
        self._memo: dict[tuple, Effect] = {}
        self._last_224: tuple = (None, None)
        self._clean: dict[tuple, torch.Tensor] = {}
        self._order_pool: dict[int, dict[str, torch.Tensor]] = {}
        self._order_memo: dict[tuple, dict[str, float]] = {}

    def order_pool(self, size: int) -> dict[str, torch.Tensor]:
        """{file: ``n_order`` training images at ``size``} for every real 2D MedMNIST file present (and
        ``<file>/bicubic``: the same 28-px images bicubic-upsampled, at 64 / 128 px)."""
        if size not in self._order_pool:
            pool = {}
            for ds in PUBLISHED_224:
                if not (self.root / medbench.get_spec(ds).filename(28)).is_file():
                    continue
                split = medbench.load_dataset(ds, "train", 28, self.root)
                idx = sorted(np.random.default_rng(1).choice(len(split), min(self.n_order, len(split)), replace=False))
                pool[ds] = proxy_at(split.images[idx].contiguous(), size)
                if size != 28:
                    pool[f"{ds}/bicubic"] = bicubic_at(split.images[idx].contiguous(), size)
            self._order_pool[size] = pool
        return self._order_pool[size]

    def order_psnr(self, name: str, params: dict, size: int) -> dict[str, tuple[float, float]]:
        """{file: (pooled, mean per-image) PSNR (dB) of the corruption on the order pool's images at ``size``}."""
        key = (name, tuple(sorted(params.items())), size)
        if key not in self._order_memo:
            fn = OPS_2D[CORRUPTION_OPS_2D[name]]
            self._order_memo[key] = {
                src: psnr_db(fn(x, params, image_rngs(SEED, src, name, 0, range(len(x)))), x)
                for src, x in self.order_pool(size).items()}
        return self._order_memo[key]

    def ordered(self, name: str, params: dict, prev: dict | None, size: int) -> bool:
        """``params`` lowers both PSNRs by ORDER_STEP_DB below ``prev``'s on every file of the order pool
        (always true for corruptions outside ORDERED and for the first severity)."""
        if name not in ORDERED or prev is None:
            return True
        now, before = self.order_psnr(name, params, size), self.order_psnr(name, prev, size)
        return all(a <= b - ORDER_STEP_DB for src in now for a, b in zip(now[src], before[src]))

    def images_224(self, dataset: str) -> str:
        """Load (once) the pseudo-224 images for ``dataset``; return the dataset they come from."""
        spec = medbench.get_spec(dataset)
        source = dataset
        if not (self.root / spec.filename(28)).is_file():
            source = "retinamnist" if spec.n_channels == 3 else "pneumoniamnist"
        if source not in self._images:
            split = medbench.load_dataset(source, "train", 28, self.root)
            idx = sorted(np.random.default_rng(0).choice(len(split), self.n, replace=False))
            self._real28[source] = split.images[idx].contiguous()
            self._images[source] = upsample_224(self._real28[source])
        return source

    def clean(self, source: str, size: int, for_target: bool) -> torch.Tensor:
        """The clean images at ``size``: the 224-px ones area-resized (for the target), except that the
        candidates at 28 px are measured on the real 28-px images (what the benchmark corrupts)."""
        if size == 28 and not for_target:
            return self._real28[source]
        if (source, size) not in self._clean:
            self._clean[(source, size)] = quantize(area_resize(self._images[source].double() / 255, size))
        return self._clean[(source, size)]

    def effect(self, source: str, name: str, params: dict, size: int, at_224: bool) -> Effect:
        key = (source, name, tuple(sorted(params.items())), size, at_224)
        if key not in self._memo:
            x224 = self._images[source]
            # one noise stream for every candidate and severity, so that effects are comparable
            rngs = image_rngs(SEED, source, name, 0, range(len(x224)))
            fn = OPS_2D[CORRUPTION_OPS_2D[name]]
            clean = self.clean(source, size, at_224)
            if at_224:
                k224 = (source, name, tuple(sorted(params.items())))
                if self._last_224[0] != k224:  # the 224-px run is the slow part: reuse it across sizes
                    self._last_224 = (k224, fn(x224, params, rngs).double() / 255)
                corrupted = quantize(area_resize(self._last_224[1], size))
            else:
                corrupted = fn(clean, params, rngs)
            self._memo[key] = measure(corrupted, clean)
        return self._memo[key]

    def calibrate(self, source: str, name: str, p224: dict, size: int, prev: tuple[Effect, int, dict] | None
                  ) -> tuple[dict, Effect, Effect, bool, int]:
        """(params, target, achieved, adjusted, index in the candidate family (-1: published)) for one severity.

        Calibrated corruptions take the candidate whose RMSE is closest to the 224-px target among the
        admissible ones; size-invariant ones keep the published parameters when those are admissible.
        Admissible: mean |delta| >= MIN_MEAN_ABS_DELTA, >= MIN_CHANGED of the images changed, and, after
        the first severity, RMSE above the previous severity's and mean |delta| at least STEP times it
        (pixelate and jpeg also need a stronger parameter than the previous severity's; pixelate a PSNR
        ORDER_STEP_DB lower on every file of the order pool, see :meth:`ordered`). ``adjusted``: the
        target or the published parameters were not admissible and the weakest admissible candidate was taken.
        """
        target = self.effect(source, name, p224, size, True)
        cands = candidates(name, p224, size, self.n_candidates)
        prev_eff, prev_idx, prev_params = prev if prev else (None, -1, None)

        def eff(i: int) -> Effect:
            return self.effect(source, name, cands[i], size, False)

        def ok(e: Effect) -> bool:
            if e.mad < MIN_MEAN_ABS_DELTA or e.changed < MIN_CHANGED:
                return False
            return prev_eff is None or (e.rmse > prev_eff.rmse + 1e-9 and e.mad >= STEP * prev_eff.mad)

        def admissible(i: int) -> bool:
            # the order of parameters only carries across severities in the absolute families (pixelate,
            # jpeg: their effect is not monotone in the parameter); the others are scaled per severity
            return (i > prev_idx or name not in DISCRETE) and ok(eff(i))

        if name in INVARIANT:
            e = self.effect(source, name, p224, size, False)
            if ok(e):
                return dict(p224), target, e, False, -1
        if name in DISCRETE:  # few candidates, effect not monotone in the parameter (resampling phase): try all
            free = min(range(len(cands)), key=lambda i: abs(eff(i).rmse - target.rmse))
            options = [i for i in range(prev_idx + 1, len(cands))
                       if ok(eff(i)) and self.ordered(name, cands[i], prev_params, size)] or [len(cands) - 1]
            best = min(options, key=lambda i: abs(eff(i).rmse - target.rmse))
            return cands[best], target, eff(best), best != free, best
        if name not in INVARIANT:  # binary search for the target on the (near-)monotone effect curve
            lo, hi = 0, len(cands) - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if eff(mid).rmse < target.rmse:
                    lo = mid + 1
                else:
                    hi = mid
            near = [i for i in (lo - 1, lo) if i >= 0]
            options = [i for i in near if admissible(i)]
            if options:
                best = min(options, key=lambda i: abs(eff(i).rmse - target.rmse))
                return cands[best], target, eff(best), False, best
        # the target (or the published parameters) is not admissible: the weakest admissible candidate
        lo, hi = 0, len(cands) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if admissible(mid):
                hi = mid
            else:
                lo = mid + 1
        return cands[lo], target, eff(lo), True, lo

HEADER = ("# MedMNIST-C parameters per dataset, corruption and size (224 = published; 28/64/128 =\n"
          "# calibrated, with the measurement that justifies them) and the medbench 3D suite.\n"
          "# Generated by scripts/calibrate_corruptions.py; changing a number makes a new protocol version.\n")
SIZES_3D = (28, 64)


def build_suite_3d(root: Path, n_volumes: int) -> dict:
    """The 3D section: which corruptions each kind of volume gets (and why), parameters per size, and
    their measured effect on the first ``n_volumes`` test volumes of every 3D file present."""
    from medbench.corruptions import corrupt

    params = {}
    for size in SIZES_3D:
        scale = size / 28
        params[str(size)] = {
            name: {"params": [{k: (_r(v * scale) if k in SPATIAL_3D.get(name, ()) else v) for k, v in p.items()}
                              for p in plist]}
            for name, plist in SUITE_3D_28.items()
        }
    measured: dict = {"metric": "over the first volumes of the test split: fraction of voxels changed and mean "
                                "|corrupted - clean| (0..255), per severity; mean |delta| must grow strictly",
                      "volumes": n_volumes}
    for suite in SUITES_3D:
        for ds in suite.datasets:
            spec = medbench.get_spec(ds)
            for size in SIZES_3D:
                fname = f"{ds}.npz" if size == 28 else f"{ds}_{size}.npz"
                if not (root / fname).is_file():
                    continue
                x = medbench.load_dataset(ds, "test", size, root).images[:n_volumes]
                row = {}
                for name in tqdm(suite.corruptions, desc=f"measuring {ds} {size}", unit="corruption", leave=False):
                    changed, delta = [], []
                    for sev, p in enumerate(params[str(size)][name]["params"], 1):
                        d = (corrupt(x, spec, name, sev, p).double() - x.double()).abs()
                        changed.append(round(float((d > 0).double().mean()), 5))
                        delta.append(round(float(d.mean()), 3))
                    row[name] = {"changed_fraction": changed, "mean_abs_delta": delta}
                measured.setdefault(ds, {})[str(size)] = row
    return {
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "suites": {s.kind: {"datasets": list(s.datasets), "corruptions": list(s.corruptions), "why": s.why,
                            "not_applied": dict(s.not_applied)} for s in SUITES_3D},
        "parameters": params,
        "measured": measured,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=None, help="folder with the MedMNIST .npz files (default: $MEDBENCH_DATA)")
    ap.add_argument("--images", type=int, default=24, help="training images per dataset used to measure (default 24)")
    ap.add_argument("--candidates", type=int, default=120,
                    help="candidate values per continuous parameter family (default 120)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"where to write the parameters (default {OUT})")
    ap.add_argument("--volumes", type=int, default=64,
                    help="test volumes per 3D dataset file on which the 3D suite's effect is measured (default 64)")
    ap.add_argument("--order-images", type=int, default=128,
                    help="training images per real 2D file on which pixelate's order is checked (default 128)")
    ap.add_argument("--datasets", nargs="+", choices=sorted(PUBLISHED_224), metavar="DATASET",
                    help="re-calibrate only these 2D datasets, keeping the others' tables of the existing file")
    ap.add_argument("--corruptions", nargs="+", choices=sorted(CORRUPTION_OPS_2D), metavar="CORRUPTION",
                    help="re-calibrate only these 2D corruptions, keeping the others' tables of the existing file")
    ap.add_argument("--only-3d", action="store_true",
                    help="rewrite only the 3D suite's parameters, keeping the 2D tables of the existing file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    root = data_root(args.data_root)
    cal = Calibrator(root, args.images, args.candidates, args.order_images)

    table: dict = {}
    jobs = [(ds, name) for ds in PUBLISHED_224 for name in PUBLISHED_224[ds]]
    partial = bool(args.only_3d or args.datasets or args.corruptions)
    if partial:
        jobs = [(ds, name) for ds, name in jobs if not args.only_3d and ds in (args.datasets or PUBLISHED_224)
                and name in (args.corruptions or CORRUPTION_OPS_2D)]
        table = yaml.safe_load(args.out.read_text())["medmnist-c"] if args.out.is_file() else {}
    failures = []
    for ds, name in tqdm(jobs, desc="calibrating", unit="corruption"):
        source = cal.images_224(ds)
        entry: dict = {"224": {"source": "published (medmnistc 0.1.0)", "params": PUBLISHED_224[ds][name]}}
        for size in SIZES:
            entry[str(size)] = {
                "source": "size-invariant (published parameters kept)" if name in INVARIANT else "calibrated",
                "params": [], "measured_on": source, "target_rmse": [], "achieved_rmse": [],
                "achieved_mean_abs_delta": [], "changed_fraction": [],
            }
        prev: dict = {size: None for size in SIZES}
        for sev, p224 in enumerate(PUBLISHED_224[ds][name], 1):  # severity outer: one 224-px run per severity
            for size in SIZES:
                p, t, a, adjusted, idx = cal.calibrate(source, name, p224, size, prev[size])
                e = entry[str(size)]
                if adjusted:
                    e.setdefault("adjusted_severities", []).append(sev)
                    if name in INVARIANT:
                        e["source"] = ("size-invariant (published parameters kept, except the adjusted severities: "
                                       "published ones too weak or out of order)")
                if a.mad < MIN_MEAN_ABS_DELTA or a.changed < MIN_CHANGED or (
                        prev[size] and (a.rmse <= prev[size][0].rmse or a.mad < STEP * prev[size][0].mad)) or (
                        not cal.ordered(name, p, prev[size] and prev[size][2], size)):
                    failures.append(f"{ds} {name} {size} px severity {sev}: {a}")
                prev[size] = (a, idx, p)
                if name in ORDERED:
                    for src, (pooled, _) in cal.order_psnr(name, p, size).items():
                        e.setdefault("order_psnr_db", {}).setdefault(src, []).append(round(pooled, 2))
                e["params"].append(p)
                e["target_rmse"].append(round(t.rmse, 2))
                e["achieved_rmse"].append(round(a.rmse, 2))
                e["achieved_mean_abs_delta"].append(round(a.mad, 3))
                e["changed_fraction"].append(round(a.changed, 3))
        for size in SIZES:  # keep the key order readable: adjusted severities last
            e = entry[str(size)]
            if "adjusted_severities" in e:
                e["adjusted_severities"] = e.pop("adjusted_severities")
        table.setdefault(ds, {})[name] = entry
    if failures:
        print("calibration failed: no admissible parameters for\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1

    if partial and not args.only_3d:  # the 3D suite stays as it is
        suite_3d = yaml.safe_load(args.out.read_text())["medbench-3d"]
    else:
        suite_3d = build_suite_3d(root, args.volumes)
    if args.only_3d:
        doc = yaml.safe_load(args.out.read_text())  # the 2D tables and their calibration metadata stay as they are
        doc["medbench-3d"] = suite_3d
        args.out.write_text(HEADER + yaml.safe_dump(doc, sort_keys=False, width=120, default_flow_style=None))
        print(f"wrote {args.out}")
        return 0

    doc = {
        "version": CURRENT_VERSION,
        "generated_by": "scripts/calibrate_corruptions.py",
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "calibration": {
            "metric": "mean per-image RMSE (0..255) between corrupted and clean image at the target size",
            "target": "corrupt at 224 px with the published parameters, then area-resize to the size",
            "images": (f"{args.images} training images per dataset, upsampled 28 -> 224 px with Pillow bicubic; "
                       "candidates at 28 px are measured on the same images' real 28-px files"),
            "stand_ins": "datasets whose files are absent are measured on pneumoniamnist (grey) or retinamnist (RGB)",
            "seed": SEED,
            "admissible": (f"every severity changes >= {MIN_CHANGED:.0%} of the images, with mean |delta| >= "
                           f"{MIN_MEAN_ABS_DELTA} grey levels; after severity 1, RMSE above and mean |delta| at least "
                           f"{STEP}x the previous severity's (at 28 px measured on the real 28-px images)"),
            "candidates": args.candidates,
            "order": (f"{', '.join(sorted(ORDERED))}: each severity's PSNR (of the pooled MSE, and the mean "
                      f"per-image PSNR) at least {ORDER_STEP_DB} dB below the previous severity's on "
                      f"{args.order_images} training images of every real 2D file present, both channel families; "
                      "at 64 / 128 px on the 224-px proxy area-resized and on the 28-px images bicubic-upsampled "
                      "(<file>/bicubic); pooled values in order_psnr_db. Its effect is not monotone in the factor "
                      "and its order depends on the image (protocol 3: at 64 px the factors 0.9609 -> 0.9453 were "
                      "weaker at severity 1 than 2 on BreastMNIST's test images, 44.27 vs 45.33 dB)"),
        },
        "medmnist-c": table,
        "medbench-3d": suite_3d,
    }
    args.out.write_text(HEADER + yaml.safe_dump(doc, sort_keys=False, width=120, default_flow_style=None))
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
