"""A PNG grid of one test image under every corruption and severity, for people to look at."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def corruption_grid(dataset: str, *, size: int = 28, index: int = 0, out: str | os.PathLike = "grid.png",
                    data_root: str | os.PathLike | None = None, protocol=None) -> Path:
    """Write rows = corruptions, columns = clean + severities 1..5 (3D: the middle slice). Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..data import get_spec, load_dataset
    from ..protocol import load_protocol
    from .generate import corrupt
    from .params import corruption_parameters

    spec = get_spec(dataset)
    proto = protocol or load_protocol()
    split = load_dataset(spec.name, "test", size, data_root)
    if not 0 <= index < len(split):
        raise IndexError(f"--index {index} is outside the {spec.name} test split (0..{len(split) - 1}).")
    params = corruption_parameters(spec, size, proto)
    image = split.images[index:index + 1]
    seed = int(proto["seed"])

    def as_rgb(x) -> np.ndarray:
        a = x[0].numpy()
        if spec.is_3d:
            a = a[:, a.shape[1] // 2]  # middle slice along depth
        return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)

    n_sev = max(len(p) for p in params.values())
    fig, axes = plt.subplots(len(params), n_sev + 1, figsize=(1.3 * (n_sev + 1), 1.3 * len(params)), squeeze=False)
    for r, (name, plist) in enumerate(params.items()):
        cols = [("clean", image)] + [(f"s{s}", corrupt(image, spec, name, s, p, seed=seed, indices=[index]))
                                     for s, p in enumerate(plist, 1)]
        for c, (title, img) in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(as_rgb(img), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(f"{spec.name}, {size} px, test image {index}", fontsize=9)
    fig.tight_layout()
    path = Path(out)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
