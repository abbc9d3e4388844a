"""Run the ORIGINAL MedMNIST-C package (``medmnistc`` 0.1.0) in its own virtual environment, as a worker.

medbench never imports ``medmnistc`` (it pins old medmnist / numpy and needs ImageMagick), so the
benchmark and the fidelity checks start this file with that environment's Python and talk to it:
one JSON request per line on stdin, one ``@@RESULT {json}`` line per request on stdout (anything
else the package prints is ignored). Images travel as ``.npz`` files (uint8 ``N x C x H x W`` under
``images``), loaded with ``allow_pickle=False`` on both sides.

Requests:
  {"cmd": "run", "dataset": "pathmnist", "corruption": "pixelate", "severity": 3,
   "input": "in.npz", "output": "out.npz" | null, "seed": 0}
  -> {"ok": true, "images": N, "process_s": ..., "wall_s": ...}
     (times cover the original calling protocol for every image, nothing else)
  {"cmd": "quit"}

The calling protocol is the original's (DatasetManager), per image: ``Image.fromarray(x).convert('RGB')``,
``apply(img, severity - 1)``, then ``Image.fromarray(out).convert('L')`` for grey datasets and
``np.array``. Its StainDeposit reads the package's own ``assets/inks.npz`` (plain float arrays).
The import (and its torchvision work-around) is shared with the fidelity checks (bench/_medmnistc.py,
a one-shot batch runner); this one stays up between requests so that timings can be interleaved.
Usage: /work/venv-medmnistc/bin/python bench/medmnistc_runner.py [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def run_original(corruption, images, severity: int, grey: bool, seed: int, seed_everything):
    """Apply one original corruption to uint8 ``N x C x H x W`` images; returns (uint8 array, process_s, wall_s)."""
    import numpy as np
    from PIL import Image

    corruption.rng = seed_everything(seed)  # as DatasetManager does; ImpulseNoise reads self.rng
    out = np.empty_like(images)
    c0, w0 = time.process_time(), time.perf_counter()
    for i, a in enumerate(images):
        img = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)).convert("RGB")
        r = corruption.apply(img, severity - 1)
        if grey:
            r = Image.fromarray(r).convert("L")
        arr = np.array(r)
        out[i] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return out, time.process_time() - c0, time.perf_counter() - w0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenCV threads (default 1)")
    args = ap.parse_args()
    import cv2
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from _medmnistc import _import_medmnistc  # the fidelity checks' import (torchvision op schemas)

    registry, is_rgb, seed_everything = _import_medmnistc()
    print("@@RESULT " + json.dumps({"ok": True, "ready": True, "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("cmd") == "quit":
            break
        try:
            with np.load(req["input"], allow_pickle=False) as f:
                images = f["images"]
            corruption = registry[req["dataset"]][req["corruption"]]
            grey = not is_rgb[req["dataset"]]
            if grey != (images.shape[1] == 1):
                raise ValueError(f"{req['dataset']} is {'grey' if grey else 'RGB'}; got {images.shape[1]}-channel images")
            out, cpu, wall = run_original(corruption, images, int(req["severity"]), grey, int(req.get("seed", 0)),
                                          seed_everything)
            if req.get("output"):
                np.savez(req["output"], images=out)
            reply = {"ok": True, "images": len(images), "process_s": cpu, "wall_s": wall}
        except Exception as exc:  # report, keep serving
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print("@@RESULT " + json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
