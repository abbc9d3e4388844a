"""Corruption throughput, medbench's batched operations against a straightforward per-image version.

For every MedMNIST-C corruption, at 28 px (the protocol's calibrated parameters, severity 3) and
at 224 px (the published parameters, severity 3), both run side by side in one process,
interleaved:
- ``medbench``: ``medbench.corruptions.corrupt`` on the whole batch;
- ``per_image``: the obvious loop over images with PIL / NumPy / SciPy, as the reference package
  does it (PIL resize, JPEG and ImageEnhance; NumPy noise; scipy.ndimage filters and zoom;
  scikit-image HSV). The drawn corruptions (bubble, stain_deposit, black_corner, characters)
  have no library version, so their baseline is medbench's own operation called image by image.
Also times generating the whole corrupted BreastMNIST and PneumoniaMNIST test sets (all
corruptions x 5 severities, cached files written and verified).

Writes bench/results/corruptions.json. Targets: every corruption >= 1,000 images/s at 28 px;
blurs >= 10x the per-image version; whole test sets in seconds.
Usage: MEDBENCH_DATA=../shared/data/medmnist python bench/corruptions.py [--threads 1]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import medbench  # noqa: E402
from medbench.corruptions import build_corrupted_sets, corrupt, corruption_parameters  # noqa: E402
from medbench.corruptions.ops2d import defocus_kernel, gaussian_blur_params, motion_taps  # noqa: E402
from medbench.protocol import load_protocol  # noqa: E402

# which dataset's parameters to time each corruption with (every corruption appears once)
SOURCE = {
    "pixelate": "pathmnist", "jpeg_compression": "pathmnist", "gaussian_noise": "dermamnist",
    "speckle_noise": "dermamnist", "impulse_noise": "dermamnist", "shot_noise": "dermamnist",
    "defocus_blur": "dermamnist", "motion_blur": "dermamnist", "zoom_blur": "dermamnist",
    "gaussian_blur": "pneumoniamnist", "brightness_up": "pathmnist", "brightness_down": "pathmnist",
    "contrast_up": "pathmnist", "contrast_down": "pathmnist", "saturate": "pathmnist",
    "gamma_corr_up": "pneumoniamnist", "gamma_corr_down": "pneumoniamnist", "stain_deposit": "pathmnist",
    "bubble": "pathmnist", "black_corner": "dermamnist", "characters": "dermamnist",
}
BLURS = ("defocus_blur", "motion_blur", "zoom_blur", "gaussian_blur")


def _pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(a[0]) if a.shape[0] == 1 else Image.fromarray(a.transpose(1, 2, 0))


def _chw(a: np.ndarray) -> np.ndarray:
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def per_image(name: str, images: np.ndarray, p: dict, spec, rng: np.random.Generator) -> list[np.ndarray]:
    """The straightforward version: one image at a time with PIL / NumPy / SciPy."""
    out = []
    for a in images:
        f = a.astype(np.float64) / 255
        if name == "pixelate":
            img = _pil(a)
            s = int(a.shape[-1] * p["factor"])
            r = _chw(np.asarray(img.resize((s, s), Image.BOX).resize(img.size, Image.BOX)))
        elif name == "jpeg_compression":
            buf = io.BytesIO()
            _pil(a).save(buf, "JPEG", quality=p["quality"])
            r = _chw(np.asarray(Image.open(buf)))
        elif name == "gaussian_noise":
            r = np.clip(f + rng.normal(size=f.shape, scale=p["sigma"]), 0, 1)
        elif name == "speckle_noise":
            r = np.clip(f + f * rng.normal(size=f.shape, scale=p["sigma"]), 0, 1)
        elif name == "impulse_noise":
            flip = rng.random(f.shape) < p["amount"]
            salt = rng.random(f.shape) < 0.5
            r = np.where(flip, salt.astype(float), f)
        elif name == "shot_noise":
            r = np.clip(rng.poisson(f * p["photons"]) / p["photons"], 0, 1)
        elif name == "defocus_blur":
            k = defocus_kernel(float(p["radius"]), float(p["alias_blur"])).numpy()
            r = np.stack([ndimage.correlate(ch, k, mode="mirror") for ch in f])
        elif name == "motion_blur":
            taps = motion_taps(float(p["radius"]), float(p["sigma"]))
            ang = np.deg2rad(rng.uniform(-45, 45))
            n = len(taps)
            k = np.zeros((2 * n + 1, 2 * n + 1))
            for i, w in enumerate(taps):
                k[n + int(np.ceil(i * np.sin(ang) - 0.5)), n + int(np.ceil(i * np.cos(ang) - 0.5))] += w
            r = np.stack([ndimage.correlate(ch, k, mode="nearest") for ch in f])
        elif name == "zoom_blur":
            h = f.shape[-1]
            acc = f.copy()
            zs = np.arange(1, p["stop"], p["step"])
            for z in zs:
                ch = int(np.ceil(h / z))
                top = (h - ch) // 2
                zz = ndimage.zoom(f[:, top:top + ch, top:top + ch], (1, z, z), order=1)
                t = (zz.shape[-1] - h) // 2
                acc += zz[:, t:t + h, t:t + h]
            r = acc / (len(zs) + 1)
        elif name == "gaussian_blur":
            sigma, radius = gaussian_blur_params(p)
            r = np.stack([ndimage.gaussian_filter(ch, sigma, mode="mirror", truncate=radius / sigma) for ch in f])
        elif name in ("brightness_up", "brightness_down"):
            r = _chw(np.asarray(ImageEnhance.Brightness(_pil(a)).enhance(p["factor"])))
        elif name in ("contrast_up", "contrast_down"):
            r = _chw(np.asarray(ImageEnhance.Contrast(_pil(a)).enhance(p["factor"])))
        elif name in ("gamma_corr_up", "gamma_corr_down"):
            lut = [int(255.999 * (v / 255) ** p["gamma"]) for v in range(256)]
            r = _chw(np.asarray(_pil(a).point(lut * a.shape[0])))
        elif name == "saturate":
            from skimage import color

            hsv = color.rgb2hsv(f.transpose(1, 2, 0))
            hsv[..., 1] = np.clip(hsv[..., 1] + p["shift"], 0, 1)
            r = color.hsv2rgb(hsv).transpose(2, 0, 1)
        else:  # drawn corruptions: medbench's own operation, one image at a time
            r = corrupt(torch.from_numpy(a[None]), spec, name, 3, p).numpy()[0]
        out.append(r if r.dtype == np.uint8 else (np.clip(r, 0, 1) * 255).round().astype(np.uint8))
    return out


def images_for(spec, size: int, n: int, root: Path) -> torch.Tensor:
    """Real test images of the same channel count (upsampled for 224 px), else synthetic ones."""
    source = "retinamnist" if spec.n_channels == 3 else "pneumoniamnist"
    try:
        x = medbench.load_dataset(source, "test", 28, root).images[:n]
    except medbench.errors.MedbenchError:
        x = torch.randint(0, 256, (n, spec.n_channels, 28, 28), dtype=torch.uint8)
    if size != 28:
        x = torch.from_numpy(np.stack([_chw(np.asarray(_pil(a).resize((size, size), Image.BICUBIC)))
                                       for a in x.numpy()]))
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a conservative figure)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n28", type=int, default=400, help="images per timing at 28 px")
    ap.add_argument("--n224", type=int, default=16, help="images per timing at 224 px")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = medbench.data.data_root()
    proto = load_protocol()
    rows = []
    for size, n in ((28, args.n28), (224, args.n224)):
        for name, ds in SOURCE.items():
            spec = medbench.get_spec(ds)
            p = corruption_parameters(spec, size, proto)[name][2]
            x = images_for(spec, size, n, root)
            xn = x.numpy()
            rng = np.random.default_rng(0)
            times = _common.interleaved({
                "medbench": lambda: corrupt(x, spec, name, 3, p),
                "per_image": lambda: per_image(name, xn, p, spec, rng),
            }, repeats=args.repeats)
            t_mb, t_pi = _common.median(times["medbench"]), _common.median(times["per_image"])
            row = {"corruption": name, "size": size, "dataset_parameters": ds, "params": p, "images": len(x),
                   "medbench_img_s": round(len(x) / t_mb, 1), "per_image_img_s": round(len(x) / t_pi, 1),
                   "speedup": round(t_pi / t_mb, 2)}
            rows.append(row)
            print(f"{size:4d} px {name:18s} medbench {row['medbench_img_s']:9.1f} img/s   per-image "
                  f"{row['per_image_img_s']:9.1f} img/s   x{row['speedup']}", flush=True)

    whole = {}
    with tempfile.TemporaryDirectory() as cache:
        for ds in ("breastmnist", "pneumoniamnist"):
            spec = medbench.get_spec(ds)
            try:
                split = medbench.load_dataset(ds, "test", 28, root)
            except medbench.errors.MedbenchError as exc:
                whole[ds] = {"skipped": str(exc)}
                continue
            params = corruption_parameters(spec, 28, proto)
            t0 = time.perf_counter()
            sets = build_corrupted_sets(spec, 28, split, params, cache_dir=cache, progress=False)
            t_build = time.perf_counter() - t0
            t0 = time.perf_counter()
            for name in params:
                sets.load(name)
            t_verify = time.perf_counter() - t0
            whole[ds] = {"images": len(split), "corruptions": len(params), "severities": 5,
                         "generate_s": round(t_build, 2), "load_and_verify_s": round(t_verify, 3)}
            print(f"{ds}: {len(params)} x 5 corrupted test sets of {len(split)} images in {t_build:.1f} s "
                  f"(load + verify {t_verify:.2f} s)", flush=True)

    at28 = [r for r in rows if r["size"] == 28]
    summary = {
        "min_img_s_28px": min(r["medbench_img_s"] for r in at28),
        "slowest_28px": min(at28, key=lambda r: r["medbench_img_s"])["corruption"],
        "all_at_least_1000_img_s_28px": all(r["medbench_img_s"] >= 1000 for r in at28),
        "blur_speedups": {f"{r['corruption']}@{r['size']}": r["speedup"] for r in rows if r["corruption"] in BLURS},
        "blurs_at_least_10x": all(r["speedup"] >= 10 for r in rows if r["corruption"] in BLURS),
    }
    path = _common.write("corruptions", {"threads": args.threads, "repeats": args.repeats, "rows": rows,
                                         "whole_test_sets": whole, "summary": summary})
    print(summary)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
