"""Corruption speed at 224 px: medbench's batched operations against the ORIGINAL MedMNIST-C package.

For every MedMNIST-C corruption (one dataset's published parameters each, severity 3 unless
``--severities`` names others), on the same
real images upsampled to 224 px (retinamnist test images for RGB suites, pneumoniamnist for grey):
- ``medbench``: ``medbench.corruptions.corrupt`` on the batch, in this process;
- ``original``: ``medmnistc`` 0.1.0 with its own calling protocol image by image, in a worker process
  running its own virtual environment (bench/medmnistc_runner.py; images exchanged as .npz files,
  ``allow_pickle=False``). Each side times itself (``time.process_time`` and ``time.perf_counter``
  around the corruption only), the two are interleaved repeat by repeat, and the median of the
  repeats is reported: images/s (CPU and wall) and speed ratio = original time / medbench time
  (> 1: medbench is faster). The machine load (``os.getloadavg``) before and after each corruption
  and the CPU count are recorded, because this machine is shared.
Also times generating the whole corrupted BreastMNIST and PneumoniaMNIST test sets at 28 px
(medbench only: the original cannot run at 28 px) unless ``--skip-whole``.

Writes bench/results/corruptions.json.
Usage: MEDBENCH_DATA=/work/shared/data/medmnist python bench/corruptions.py
       [--original-python /work/venv-medmnistc/bin/python] [--repeats 5] [--images 16] [--threads 1]
       [--only CORRUPTION ...] [--severities 1 2 3 4 5] [--skip-whole]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import medbench  # noqa: E402
from medbench.corruptions import build_corrupted_sets, corrupt, corruption_parameters  # noqa: E402
from medbench.protocol import load_protocol  # noqa: E402

RUNNER = Path(__file__).resolve().parent / "medmnistc_runner.py"
DEFAULT_PYTHON = "/work/venv-medmnistc/bin/python"
SEVERITY = 3
# which dataset's published parameters to time each corruption with (every corruption appears once)
SOURCE = {
    "pixelate": "pathmnist", "jpeg_compression": "pathmnist", "gaussian_noise": "dermamnist",
    "speckle_noise": "dermamnist", "impulse_noise": "dermamnist", "shot_noise": "dermamnist",
    "defocus_blur": "dermamnist", "motion_blur": "dermamnist", "zoom_blur": "dermamnist",
    "gaussian_blur": "pneumoniamnist", "brightness_up": "pathmnist", "brightness_down": "pathmnist",
    "contrast_up": "pathmnist", "contrast_down": "pathmnist", "saturate": "pathmnist",
    "gamma_corr_up": "pneumoniamnist", "gamma_corr_down": "pneumoniamnist", "stain_deposit": "pathmnist",
    "bubble": "pathmnist", "black_corner": "dermamnist", "characters": "dermamnist",
}


class Original:
    """The original package in a worker process (see bench/medmnistc_runner.py)."""

    def __init__(self, python: str, threads: int):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        env.pop("PYTHONPATH", None)  # the worker must not see this checkout's packages
        self.proc = subprocess.Popen([python, str(RUNNER), "--threads", str(threads)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=tempfile.gettempdir())
        self.hello = self._read()

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("@@RESULT "):
                return json.loads(line[len("@@RESULT "):])
        raise RuntimeError(f"the medmnistc worker exited (code {self.proc.wait()}); run it by hand to see why: "
                           f"{self.proc.args[0]} {RUNNER}")

    def run(self, dataset: str, corruption: str, severity: int, inp: Path, out: Path | None = None) -> dict:
        req = {"cmd": "run", "dataset": dataset, "corruption": corruption, "severity": severity,
               "input": str(inp), "output": str(out) if out else None, "seed": 0}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def images_224(spec, n: int, root: Path) -> torch.Tensor:
    """Real test images of the suite's channel count (retina RGB, pneumonia grey), bicubic-upsampled to 224 px."""
    source = "retinamnist" if spec.n_channels == 3 else "pneumoniamnist"
    x = medbench.load_dataset(source, "test", 28, root).images[:n].numpy()
    up = []
    for a in x:
        img = Image.fromarray(a[0]) if a.shape[0] == 1 else Image.fromarray(a.transpose(1, 2, 0))
        b = np.asarray(img.resize((224, 224), Image.BICUBIC))
        up.append(b[None] if b.ndim == 2 else b.transpose(2, 0, 1))
    return torch.from_numpy(np.ascontiguousarray(np.stack(up)))  # N x C x H x W in memory, as load_dataset gives


def time_medbench(x: torch.Tensor, spec, name: str, severity: int, p: dict) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    corrupt(x, spec, name, severity, p)
    return time.process_time() - c0, time.perf_counter() - w0


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def time_both(original: "Original", x: torch.Tensor, inp: Path, spec, ds: str, name: str, severity: int, p: dict,
              repeats: int) -> dict:
    """One row: medbench and the original on the same images, interleaved repeat by repeat (median reported)."""
    row = {"corruption": name, "dataset_parameters": ds, "severity": severity, "params": p,
           "images": len(x), "size": 224, "load_before": _load()}
    warm = original.run(ds, name, severity, inp)  # warm-up (imports, caches) on both sides
    time_medbench(x, spec, name, severity, p)
    if not warm["ok"]:
        row["original_error"] = warm["error"]
        print(f"{name:18s} original failed: {warm['error']}", flush=True)
    mb_cpu, mb_wall, or_cpu, or_wall = [], [], [], []
    for r in range(repeats):
        order = ("mb", "or") if r % 2 == 0 else ("or", "mb")  # alternate who goes first
        for side in order:
            if side == "mb":
                c, w = time_medbench(x, spec, name, severity, p)
                mb_cpu.append(c)
                mb_wall.append(w)
            elif warm["ok"]:
                res = original.run(ds, name, severity, inp)
                or_cpu.append(res["process_s"])
                or_wall.append(res["wall_s"])
    med = {k: statistics.median(v) for k, v in
           (("mb_cpu", mb_cpu), ("mb_wall", mb_wall), ("or_cpu", or_cpu), ("or_wall", or_wall)) if v}
    row.update({
        "medbench_cpu_s": [round(v, 4) for v in mb_cpu], "medbench_wall_s": [round(v, 4) for v in mb_wall],
        "original_cpu_s": [round(v, 4) for v in or_cpu], "original_wall_s": [round(v, 4) for v in or_wall],
        "medbench_img_s_cpu": round(len(x) / med["mb_cpu"], 1),
        "medbench_img_s_wall": round(len(x) / med["mb_wall"], 1),
    })
    if or_cpu:
        row.update({
            "original_img_s_cpu": round(len(x) / med["or_cpu"], 1),
            "original_img_s_wall": round(len(x) / med["or_wall"], 1),
            "speed_ratio_cpu": round(med["or_cpu"] / med["mb_cpu"], 2),
            "speed_ratio_wall": round(med["or_wall"] / med["mb_wall"], 2),
        })
    row["load_after"] = _load()
    print(f"{name:18s} s{severity} medbench {row['medbench_img_s_cpu']:8.1f} img/s CPU   original "
          f"{row.get('original_img_s_cpu', float('nan')):8.1f} img/s CPU   ratio x"
          f"{row.get('speed_ratio_cpu', float('nan'))} (wall x{row.get('speed_ratio_wall', float('nan'))})"
          f"   load {row['load_before'][0]}", flush=True)
    return row


def whole_test_sets(root: Path, proto) -> dict:
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
            c0, t0 = time.process_time(), time.perf_counter()
            sets = build_corrupted_sets(spec, 28, split, params, cache_dir=cache, progress=False)
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            t0 = time.perf_counter()
            for name in params:
                sets.load(name)
            whole[ds] = {"images": len(split), "corruptions": len(params), "severities": 5,
                         "generate_wall_s": round(wall, 2), "generate_cpu_s": round(cpu, 2),
                         "load_and_verify_wall_s": round(time.perf_counter() - t0, 3)}
            print(f"{ds}: {len(params)} x 5 corrupted 28-px test sets of {len(split)} images in {wall:.1f} s",
                  flush=True)
    return whole


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--original-python", default=DEFAULT_PYTHON,
                    help=f"Python of the virtual environment with medmnistc 0.1.0 (default {DEFAULT_PYTHON})")
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenCV threads on both sides (default 1)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per corruption and side (median reported)")
    ap.add_argument("--images", type=int, default=16, help="224-px images per timing (default 16)")
    ap.add_argument("--only", nargs="+", choices=sorted(SOURCE), metavar="CORRUPTION", help="time only these")
    ap.add_argument("--severities", nargs="+", type=int, default=[SEVERITY], choices=range(1, 6), metavar="S",
                    help=f"severities to time (default {SEVERITY})")
    ap.add_argument("--skip-whole", action="store_true", help="skip timing the whole 28-px corrupted test sets")
    args = ap.parse_args()
    if not Path(args.original_python).is_file():
        sys.exit(f"error: {args.original_python} does not exist; pass --original-python with the Python of a "
                 "virtual environment where `pip install medmnistc 'numpy<2.3'` was run (see REFERENCE.md).")
    torch.set_num_threads(args.threads)
    root = medbench.data.data_root()
    proto = load_protocol()
    load_before = _load()
    original = Original(args.original_python, args.threads)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, ds in SOURCE.items():
                if args.only and name not in args.only:
                    continue
                spec = medbench.get_spec(ds)
                x = images_224(spec, args.images, root)
                inp = Path(tmp) / f"{name}.npz"
                np.savez(inp, images=x.numpy())
                for severity in args.severities:
                    rows.append(time_both(original, x, inp, spec, ds, name, severity,
                                          corruption_parameters(spec, 224, proto)[name][severity - 1], args.repeats))
    finally:
        original.close()
    whole = {} if args.skip_whole else whole_test_sets(root, proto)
    ratios = {r["corruption"] if len(args.severities) == 1 else f"{r['corruption']}/s{r['severity']}":
              r["speed_ratio_cpu"] for r in rows if "speed_ratio_cpu" in r}
    summary = {
        "speed_ratio_cpu": ratios,
        "median_speed_ratio_cpu": round(statistics.median(ratios.values()), 2) if ratios else None,
        "slower_than_original_cpu": sorted(k for k, v in ratios.items() if v < 1),
    }
    payload = {
        "what": "224-px corruption speed, medbench vs the original medmnistc 0.1.0, side by side; "
                "speed_ratio = original time / medbench time (median of the repeats)",
        "command": "python bench/corruptions.py " + " ".join(sys.argv[1:]),
        "threads": args.threads, "repeats": args.repeats, "cpu_count": os.cpu_count(),
        "load_before": load_before, "load_after": _load(),
        "original": {"package": "medmnistc 0.1.0", "python": args.original_python, "worker": original.hello},
        "rows": rows, "whole_test_sets_28px": whole, "summary": summary,
    }
    path = _common.write("corruptions", payload)
    print(json.dumps(summary))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
