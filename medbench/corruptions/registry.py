"""Which corruptions each dataset gets, which operation implements each, and the published parameters.

``PUBLISHED_224`` holds MedMNIST-C's own severity parameters (``medmnistc`` 0.1.0,
``corruptions/registry.py``), calibrated by its authors at 224 px, written as named parameters; it
is read from the package data file ``published_224.json``. Where the reference lists six values,
its code only ever uses the first five (severities 1..5). The reference picks stain masks by
severity (``ink_size`` 24 px for severities 1-4, 32 px for 5), not by ``max_marks``.
The parameters medbench actually uses, at every size, are protocol data
(``medbench/protocols/v2_corruptions.yaml``), generated from these by ``scripts/calibrate_corruptions.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

# corruption name -> operation in ops2d.OPS_2D
CORRUPTION_OPS_2D: dict[str, str] = {
    "pixelate": "pixelate",
    "jpeg_compression": "jpeg",
    "gaussian_noise": "gaussian_noise",
    "speckle_noise": "speckle_noise",
    "impulse_noise": "impulse_noise",
    "shot_noise": "shot_noise",
    "defocus_blur": "defocus_blur",
    "motion_blur": "motion_blur",
    "zoom_blur": "zoom_blur",
    "gaussian_blur": "gaussian_blur",
    "brightness_up": "brightness",
    "brightness_down": "brightness",
    "contrast_up": "contrast",
    "contrast_down": "contrast",
    "saturate": "saturate",
    "gamma_corr_up": "gamma",
    "gamma_corr_down": "gamma",
    "stain_deposit": "stain_deposit",
    "bubble": "bubble",
    "black_corner": "black_corner",
    "characters": "characters",
}

# The parameter of each corruption that makes it the identity (for tests and sanity checks).
IDENTITY_2D: dict[str, dict] = {
    "pixelate": {"factor": 1.0}, "gaussian_noise": {"sigma": 0.0}, "speckle_noise": {"sigma": 0.0},
    "impulse_noise": {"amount": 0.0}, "defocus_blur": {"radius": 0.0, "alias_blur": 0.0},
    "motion_blur": {"radius": 0.0, "sigma": 1.0}, "gaussian_blur": {"sigma": 0.0, "radius": 0},
    "brightness_up": {"factor": 1.0}, "brightness_down": {"factor": 1.0}, "contrast_up": {"factor": 1.0},
    "contrast_down": {"factor": 1.0}, "saturate": {"shift": 0.0}, "gamma_corr_up": {"gamma": 1.0},
    "gamma_corr_down": {"gamma": 1.0}, "zoom_blur": {"stop": 1.0, "step": 0.01},
}


def _f(name: str, values) -> list[dict]:
    return [{name: v} for v in values]


_GREY_13 = ["pixelate", "jpeg_compression", "gaussian_noise", "speckle_noise", "impulse_noise", "shot_noise",
            "gaussian_blur", "brightness_up", "brightness_down", "contrast_up", "contrast_down",
            "gamma_corr_up", "gamma_corr_down"]


def load_published_224(text: str | None = None) -> dict[str, dict[str, list[dict]]]:
    """``published_224.json`` (package data; or ``text`` in its format): dataset -> corruption ->
    five severities' parameters.

    Raises ``ValueError`` if a corruption has no 2D operation or not five severities, or if a
    greyscale dataset does not have the reference's 13 corruptions in its order.
    """
    if text is None:
        text = resources.files(__package__).joinpath("published_224.json").read_text(encoding="utf-8")
    table = json.loads(text)["parameters"]
    for dataset, corruptions in table.items():
        for name, severities in corruptions.items():
            if name not in CORRUPTION_OPS_2D or len(severities) != 5:
                raise ValueError(f"published_224.json: {dataset}.{name} needs an operation in CORRUPTION_OPS_2D "
                                 f"and five severities (has {len(severities)}).")
    grey = [d for d in ("chestmnist", "pneumoniamnist", "organamnist") if list(table.get(d, _GREY_13)) != _GREY_13]
    if grey:
        raise ValueError(f"published_224.json: {', '.join(grey)} must list the 13 greyscale corruptions "
                         f"in the reference order ({', '.join(_GREY_13)}).")
    return table


PUBLISHED_224: dict[str, dict[str, list[dict]]] = load_published_224()

# ------------------------------------------------------------------ 3D suite (medbench's own, defined at 28 px)

CORRUPTION_OPS_3D: dict[str, str] = {
    "gaussian_noise": "gaussian_noise", "impulse_noise": "impulse_noise", "gaussian_blur": "gaussian_blur",
    "brightness_up": "brightness", "brightness_down": "brightness", "contrast_up": "contrast",
    "contrast_down": "contrast", "gamma_up": "gamma", "gamma_down": "gamma",
    "downsample_upsample": "downsample_upsample",
    "under_segmentation": "boundary_shift", "over_segmentation": "boundary_shift", "boundary_noise": "boundary_noise",
}

SUITE_3D_28: dict[str, list[dict]] = {
    "gaussian_noise": _f("sigma", [0.02, 0.04, 0.06, 0.08, 0.12]),
    "impulse_noise": _f("amount", [0.005, 0.01, 0.02, 0.03, 0.05]),
    "gaussian_blur": _f("sigma", [0.5, 0.75, 1.0, 1.25, 1.5]),  # voxels at 28 px; scaled with the size
    # additive (an intensity offset), so that it also changes the binary-mask volumes (adrenal, vessel)
    "brightness_up": _f("shift", [0.05, 0.1, 0.15, 0.2, 0.3]),
    "brightness_down": _f("shift", [-0.05, -0.1, -0.15, -0.2, -0.3]),
    "contrast_up": _f("factor", [1.1, 1.2, 1.3, 1.4, 1.6]),  # intensity volumes only: no effect on masks
    "contrast_down": _f("factor", [0.9, 0.8, 0.7, 0.6, 0.4]),
    "gamma_up": _f("gamma", [1.1, 1.2, 1.3, 1.4, 1.6]),  # intensity volumes only: 0 and 1 are fixed points
    "gamma_down": _f("gamma", [0.9, 0.8, 0.7, 0.6, 0.4]),
    # relative, the same at every size; factors whose size ratio is not a whole number, because block-aligned
    # ratios (0.5) alias less and broke the severity order on the real adrenal / vessel volumes
    "downsample_upsample": _f("factor", [0.75, 0.55, 0.45, 0.35, 0.25]),
    # masks only: surface moved by up to one voxel at 28 px (scaled with the size), in even steps; their
    # mean |delta| on the real masks spans about the range of impulse_noise's
    "under_segmentation": _f("depth", [-0.2, -0.4, -0.6, -0.8, -1.0]),
    "over_segmentation": _f("depth", [0.2, 0.4, 0.6, 0.8, 1.0]),
    "boundary_noise": _f("flip", [0.1, 0.2, 0.3, 0.4, 0.5]),  # 0.5: the one-voxel boundary is random
}
# parameters in voxels, scaled by size / 28
SPATIAL_3D = {"gaussian_blur": ("sigma",), "under_segmentation": ("depth",), "over_segmentation": ("depth",)}

IDENTITY_3D: dict[str, dict] = {
    "gaussian_noise": {"sigma": 0.0}, "impulse_noise": {"amount": 0.0}, "gaussian_blur": {"sigma": 0.0},
    "brightness_up": {"shift": 0.0}, "brightness_down": {"shift": 0.0}, "contrast_up": {"factor": 1.0},
    "contrast_down": {"factor": 1.0}, "gamma_up": {"gamma": 1.0}, "gamma_down": {"gamma": 1.0},
    "downsample_upsample": {"factor": 1.0}, "under_segmentation": {"depth": 0.0},
    "over_segmentation": {"depth": 0.0}, "boundary_noise": {"flip": 0.0},
}
RANDOM_3D = frozenset({"gaussian_noise", "impulse_noise", "under_segmentation", "over_segmentation", "boundary_noise"})


@dataclass(frozen=True)
class Suite3D:
    """The corruptions one kind of 3D volume gets, and why."""

    kind: str
    datasets: tuple[str, ...]
    corruptions: tuple[str, ...]
    why: str
    not_applied: tuple[tuple[str, str], ...] = ()  # (corruption of the full list, reason)


_COMMON_3D = ("gaussian_noise", "impulse_noise", "gaussian_blur", "brightness_up", "brightness_down")
_MASK_REASON = ("the volume holds two levels (0 and 255); {} maps 0 to 0 and 255 to 255 (after clipping), "
                "so it returns the volume unchanged at every severity")
SUITES_3D: tuple[Suite3D, ...] = (
    Suite3D(
        kind="intensity",
        datasets=("organmnist3d", "nodulemnist3d", "fracturemnist3d", "synapsemnist3d"),
        corruptions=_COMMON_3D + ("contrast_up", "contrast_down", "gamma_up", "gamma_down", "downsample_upsample"),
        why="continuous intensities (CT; electron microscopy for synapse): acquisition noise, blur, resolution "
            "loss and intensity changes (windowing, gain, gamma)",
        not_applied=tuple((c, "acts on the surface of a binary mask; these volumes are not masks")
                          for c in ("under_segmentation", "over_segmentation", "boundary_noise")),
    ),
    Suite3D(
        kind="mask",
        datasets=("adrenalmnist3d", "vesselmnist3d"),
        corruptions=_COMMON_3D + ("contrast_down", "downsample_upsample", "under_segmentation",
                                  "over_segmentation", "boundary_noise"),
        why="binary shape masks (adrenal: segmentation masks; vessel: voxelised vessel meshes): the intensity "
            "changes that can act on two levels, noise, blur and resolution loss, plus the errors of the "
            "segmentation the mask comes from (surface moved inwards or outwards, irregular boundary)",
        not_applied=(("contrast_up", _MASK_REASON.format("a contrast increase around the mean")),
                     ("gamma_up", _MASK_REASON.format("v ** gamma")),
                     ("gamma_down", _MASK_REASON.format("v ** gamma"))),
    ),
)
assert all(set(s.corruptions) <= set(SUITE_3D_28) and len(s.corruptions) == 10 for s in SUITES_3D)


def suite_3d(dataset: str) -> Suite3D:
    """The 3D suite of ``dataset`` (by the kind of its volumes)."""
    for s in SUITES_3D:
        if dataset in s.datasets:
            return s
    known = sorted(d for s in SUITES_3D for d in s.datasets)
    raise KeyError(f"{dataset!r} has no 3D corruption suite; known 3D datasets: {', '.join(known)}.")


def corruption_names(dataset: str, is_3d: bool) -> list[str]:
    """The corruptions of a dataset's suite, in the reference order."""
    if is_3d:
        return list(suite_3d(dataset).corruptions)
    if dataset not in PUBLISHED_224:
        raise KeyError(f"{dataset!r} has no MedMNIST-C corruption list; known: {', '.join(sorted(PUBLISHED_224))}.")
    return list(PUBLISHED_224[dataset])


def zoom_factors(p: dict) -> np.ndarray:
    return np.arange(1.0, p["stop"], p["step"])
