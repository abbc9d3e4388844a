#!/usr/bin/env python
"""Calibrate the MedMNIST-C parameters for 28, 64 and 128 px; write medbench/protocols/v2_corruptions.yaml.

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
Corruptions of pixel intensity (brightness, contrast, gamma, saturate), zoom blur (relative
zoom factors) and the drawn ones (bubble, stain_deposit, black_corner, characters, drawn in
224-px geometry) act the same at every size by construction; they keep the published
parameters, and the same RMSE measurement is recorded for them as a check.
Each severity is forced to have a strictly larger effect than the one before:
at 28 px some published severities differ by less than one pixel of resolution after resizing
(pixelate, jpeg), and the protocol's severities must stay ordered. Defocus blur keeps the disk
radius scaled by size/224 and calibrates its alias blur, because a hard-edged disk below one
pixel of radius jumps from the identity to a 5-pixel cross.
The 3D suite is defined at 28 px; at 64 px its spatial parameters (blur sigma, surface depth) scale
with the size. Which corruptions each kind of 3D volume gets (intensity volumes or binary masks) is
written with the reason, and the suite's effect (fraction of voxels changed, mean |delta|) is measured
on the 3D files present, as a record that every corruption acts at every severity.

Usage: python scripts/calibrate_corruptions.py [--data-root DIR] [--images 24] [--volumes 64] [--out PATH] [--only-3d]
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from tqdm import tqdm

import medbench
from medbench.corruptions.common import area_resize, image_rngs, quantize
from medbench.corruptions.ops2d import OPS_2D, gaussian_blur_params
from medbench.corruptions.registry import CORRUPTION_OPS_2D, PUBLISHED_224, SPATIAL_3D, SUITE_3D_28, SUITES_3D
from medbench.protocol import CURRENT_VERSION
from medbench.paths import data_root

SIZES = (28, 64, 128)
INVARIANT = {"brightness_up", "brightness_down", "contrast_up", "contrast_down", "saturate", "gamma_corr_up",
             "gamma_corr_down", "zoom_blur", "bubble", "stain_deposit", "black_corner", "characters"}
DISCRETE = {"pixelate", "jpeg_compression"}
OUT = Path(__file__).resolve().parents[1] / "medbench" / "protocols" / "v2_corruptions.yaml"
SEED = 12345  # the calibration's own noise stream (never the benchmark's)


def _r(v: float) -> float:
    """Round to 4 significant digits for the protocol file."""
    return float(f"{float(v):.4g}")


def candidates(name: str, p224: dict, size: int) -> list[dict]:
    """Parameters at ``size``, ordered from the weakest to the strongest corruption."""
    if name == "pixelate":  # one candidate per distinct downscaled size, from size-1 down to 1
        return [{"factor": _r((k + 0.5) / size)} for k in range(size - 1, 0, -1)]
    if name == "jpeg_compression":
        return [{"quality": q} for q in range(95, 0, -1)]
    ts = np.geomspace(1e-3, 2.0, 300)
    if name in ("gaussian_noise", "speckle_noise"):
        return [{"sigma": _r(p224["sigma"] * t)} for t in ts]
    if name == "impulse_noise":
        return [{"amount": _r(p224["amount"] * t)} for t in ts]
    if name == "shot_noise":  # fewer photons is stronger
        return [{"photons": _r(p224["photons"] * f)} for f in np.geomspace(2000, 0.5, 300)]
    if name == "defocus_blur":  # disk radius scales with the geometry; its (continuous) alias blur is calibrated
        return [{"radius": _r(p224["radius"] * size / 224), "alias_blur": _r(a)} for a in np.linspace(0.01, 3.0, 300)]
    ts = np.linspace(0.01, 1.2, 240)
    if name == "motion_blur":
        return [{"radius": _r(p224["radius"] * t), "sigma": _r(p224["sigma"] * t)} for t in ts]
    if name == "gaussian_blur":
        sigma, radius = gaussian_blur_params(p224)
        return [{"sigma": _r(sigma * t), "radius": max(1, math.ceil(radius * t))} for t in ts]
    raise KeyError(name)


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).pow(2).flatten(1).mean(1).sqrt().mean())


class Calibrator:
    def __init__(self, root: Path, n_images: int):
        self.root, self.n = root, n_images
        self._images: dict[str, tuple[str, torch.Tensor]] = {}
        self._memo: dict[tuple, float] = {}
        self._last_224: tuple = (None, None)
        self._clean: dict[tuple, torch.Tensor] = {}

    def images_224(self, dataset: str) -> tuple[str, torch.Tensor]:
        """(source dataset, uint8 N x C x 224 x 224) pseudo-224 images for ``dataset``."""
        spec = medbench.get_spec(dataset)
        source = dataset
        if not (self.root / spec.filename(28)).is_file():
            source = "retinamnist" if spec.n_channels == 3 else "pneumoniamnist"
        if source not in self._images:
            split = medbench.load_dataset(source, "train", 28, self.root)
            idx = np.random.default_rng(0).choice(len(split), self.n, replace=False)
            up = []
            for i in sorted(idx):
                a = split.images[i].numpy()
                img = Image.fromarray(a[0]) if a.shape[0] == 1 else Image.fromarray(a.transpose(1, 2, 0))
                b = np.asarray(img.resize((224, 224), Image.BICUBIC))
                up.append(b[None] if b.ndim == 2 else b.transpose(2, 0, 1))
            self._images[source] = (source, torch.from_numpy(np.stack(up)))
        return self._images[source]

    def effect(self, source: str, name: str, params: dict, size: int, at_224: bool) -> float:
        key = (source, name, tuple(sorted(params.items())), size, at_224)
        if key not in self._memo:
            _, x224 = self._images[source]
            # one noise stream for every candidate and severity, so that effects are comparable
            rngs = image_rngs(SEED, source, name, 0, range(len(x224)))
            fn = OPS_2D[CORRUPTION_OPS_2D[name]]
            if (source, size) not in self._clean:
                self._clean[(source, size)] = quantize(area_resize(x224.double() / 255, size))
            clean = self._clean[(source, size)]
            if at_224:
                k224 = (source, name, tuple(sorted(params.items())))
                if self._last_224[0] != k224:  # the 224-px run is the slow part: reuse it across sizes
                    self._last_224 = (k224, fn(x224, params, rngs).double() / 255)
                corrupted = quantize(area_resize(self._last_224[1], size))
            else:
                corrupted = fn(clean, params, rngs)
            self._memo[key] = rmse(corrupted, clean)
        return self._memo[key]

    def calibrate(self, source: str, name: str, p224: dict, size: int, floor: float) -> tuple[dict, float, float]:
        """(params, target, achieved): the candidate whose effect is closest to the 224-px target among
        those stronger than ``floor`` (the previous severity's effect: severities must stay ordered)."""
        target = self.effect(source, name, p224, size, True)
        cands = candidates(name, p224, size)

        def eff(i: int) -> float:
            return self.effect(source, name, cands[i], size, False)

        if name in DISCRETE:  # few candidates, effect not monotone in the parameter (resampling phase): try all
            order = sorted(range(len(cands)), key=eff)
            options = [i for i in order if eff(i) > floor + 1e-9] or [order[-1]]
        else:  # binary search on the (near-)monotone effect curve
            goal = max(target, floor)
            lo, hi = 0, len(cands) - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if eff(mid) < goal:
                    lo = mid + 1
                else:
                    hi = mid
            options = [i for i in (lo - 1, lo) if i >= 0 and eff(i) > floor + 1e-9]
            j = lo
            while not options and j < len(cands) - 1:
                j += 1
                if eff(j) > floor + 1e-9:
                    options = [j]
            options = options or [len(cands) - 1]
        best = min(options, key=lambda i: abs(eff(i) - target))
        return cands[best], target, eff(best)

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
    ap.add_argument("--out", type=Path, default=OUT, help=f"where to write the parameters (default {OUT})")
    ap.add_argument("--volumes", type=int, default=64,
                    help="test volumes per 3D dataset file on which the 3D suite's effect is measured (default 64)")
    ap.add_argument("--only-3d", action="store_true",
                    help="rewrite only the 3D suite's parameters, keeping the 2D tables of the existing file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    root = data_root(args.data_root)
    cal = Calibrator(root, args.images)

    table: dict = {}
    jobs = [(ds, name) for ds in PUBLISHED_224 for name in PUBLISHED_224[ds]]
    if args.only_3d:
        jobs = []
    for ds, name in tqdm(jobs, desc="calibrating", unit="corruption"):
        source, _ = cal.images_224(ds)
        entry: dict = {"224": {"source": "published (medmnistc 0.1.0)", "params": PUBLISHED_224[ds][name]}}
        for size in SIZES:
            entry[str(size)] = {
                "source": "size-invariant (published parameters kept)" if name in INVARIANT else "calibrated",
                "params": [], "measured_on": source, "target_rmse": [], "achieved_rmse": [],
            }
        floor = {size: -1.0 for size in SIZES}
        for p224 in PUBLISHED_224[ds][name]:  # severity outer: one 224-px run per severity
            for size in SIZES:
                if name in INVARIANT:
                    p = dict(p224)
                    t, a = cal.effect(source, name, p224, size, True), cal.effect(source, name, p, size, False)
                else:
                    p, t, a = cal.calibrate(source, name, p224, size, floor[size])
                    floor[size] = a
                e = entry[str(size)]
                e["params"].append(p)
                e["target_rmse"].append(round(t, 2))
                e["achieved_rmse"].append(round(a, 2))
        table.setdefault(ds, {})[name] = entry

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
            "images": f"{args.images} training images per dataset, upsampled 28 -> 224 px with Pillow bicubic",
            "stand_ins": "datasets whose files are absent are measured on pneumoniamnist (grey) or retinamnist (RGB)",
            "seed": SEED,
        },
        "medmnist-c": table,
        "medbench-3d": suite_3d,
    }
    args.out.write_text(HEADER + yaml.safe_dump(doc, sort_keys=False, width=120, default_flow_style=None))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
