"""Which corruptions each dataset gets, which operation implements each, and the published parameters.

``PUBLISHED_224`` holds MedMNIST-C's own severity parameters (``medmnistc`` 0.1.0,
``corruptions/registry.py``), calibrated by its authors at 224 px, written as named parameters.
Where the reference lists six values, its code only ever uses the first five (severities 1..5).
The parameters medbench actually uses, at every size, are protocol data
(``medbench/protocols/v2_corruptions.yaml``), generated from these by ``scripts/calibrate_corruptions.py``.
"""

from __future__ import annotations

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


def _pairs(a: str, b: str, values) -> list[dict]:
    return [{a: x, b: y} for x, y in values]


def _zoom(stops_steps) -> list[dict]:
    return [{"stop": stop, "step": step} for stop, step in stops_steps]


def _stains(max_marks) -> list[dict]:
    # the reference picks its ink masks by severity, not by max_marks: inks["3"] (24 px) for
    # severities 1-4 and inks["4"] (32 px) for severity 5 (``inks[str(max(3, severity_index))]``)
    return [{"max_marks": m, "ink_size": 32 if s == 5 else 24} for s, m in enumerate(max_marks, 1)]


_GREY_13 = ["pixelate", "jpeg_compression", "gaussian_noise", "speckle_noise", "impulse_noise", "shot_noise",
            "gaussian_blur", "brightness_up", "brightness_down", "contrast_up", "contrast_down",
            "gamma_corr_up", "gamma_corr_down"]

_ORGAN = {
    "pixelate": _f("factor", [0.7, 0.6, 0.5, 0.40, 0.35]),
    "jpeg_compression": _f("quality", [50, 30, 15, 10, 7]),
    "gaussian_noise": _f("sigma", [0.04, 0.08, 0.12, 0.16, 0.20]),
    "speckle_noise": _f("sigma", [0.05, 0.10, 0.20, 0.30, 0.40]),
    "impulse_noise": _f("amount", [0.01, 0.02, 0.03, 0.05, 0.08]),
    "shot_noise": _f("photons", [200, 100, 50, 25, 15]),
    "gaussian_blur": _f("kernel_size", [11, 13, 15, 17, 21]),
    "brightness_up": _f("factor", [1.2, 1.3, 1.4, 1.5, 1.6]),
    "brightness_down": _f("factor", [0.8, 0.75, 0.7, 0.65, 0.60]),
    "contrast_up": _f("factor", [1.3, 1.4, 1.6, 1.7, 1.8]),
    "contrast_down": _f("factor", [0.8, 0.7, 0.6, 0.55, 0.5]),
    "gamma_corr_up": _f("gamma", [1.3, 1.4, 1.6, 1.8, 2.0]),
    "gamma_corr_down": _f("gamma", [0.9, 0.8, 0.7, 0.6, 0.4]),
}

PUBLISHED_224: dict[str, dict[str, list[dict]]] = {
    "pathmnist": {
        "pixelate": _f("factor", [0.8, 0.6, 0.40, 0.30, 0.25]),
        "jpeg_compression": _f("quality", [50, 30, 15, 10, 7]),
        "defocus_blur": _pairs("radius", "alias_blur", [(3, 0.1), (4, 0.1), (5, 0.2), (6, 0.2), (7, 0.3)]),
        "motion_blur": _pairs("radius", "sigma", [(5, 5), (10, 5), (15, 5), (15, 8), (15, 12)]),
        "brightness_up": _f("factor", [1.1, 1.15, 1.2, 1.22, 1.25]),
        "brightness_down": _f("factor", [0.85, 0.80, 0.75, 0.72, 0.70]),
        "contrast_up": _f("factor", [1.1, 1.2, 1.3, 1.4, 1.6]),
        "contrast_down": _f("factor", [0.8, 0.7, 0.6, 0.55, 0.5]),
        "saturate": _f("shift", [0.05, 0.10, 0.15, 0.20, 0.25]),
        "stain_deposit": _stains([1, 2, 3, 4, 5]),
        "bubble": _pairs("max_radius", "max_bubbles", [(7, 15), (10, 15), (12, 15), (15, 20), (17, 25)]),
    },
    "bloodmnist": {
        "pixelate": _f("factor", [0.6, 0.5, 0.40, 0.30, 0.25]),
        "jpeg_compression": _f("quality", [50, 30, 15, 10, 7]),
        "defocus_blur": _pairs("radius", "alias_blur", [(2, 0.01), (3, 0.1), (4, 0.1), (5, 0.1), (6, 0.1)]),
        "motion_blur": _pairs("radius", "sigma", [(3, 3), (5, 5), (10, 5), (10, 7), (10, 9)]),
        "brightness_up": _f("factor", [1.1, 1.2, 1.3, 1.35, 1.4]),
        "brightness_down": _f("factor", [0.9, 0.8, 0.7, 0.6, 0.5]),
        "contrast_up": _f("factor", [1.1, 1.15, 1.2, 1.25, 1.3]),
        "contrast_down": _f("factor", [0.9, 0.8, 0.7, 0.6, 0.5]),
        "saturate": _f("shift", [0.05, 0.10, 0.15, 0.17, 0.20]),
        "stain_deposit": _stains([1, 2, 3, 3, 3]),
        "bubble": _pairs("max_radius", "max_bubbles", [(5, 10), (7, 10), (10, 10), (12, 12), (15, 12)]),
    },
    "dermamnist": {
        "pixelate": _f("factor", [0.7, 0.5, 0.40, 0.30, 0.25]),
        "jpeg_compression": _f("quality", [30, 20, 15, 10, 7]),
        "gaussian_noise": _f("sigma", [0.04, 0.08, 0.12, 0.18, 0.26]),
        "speckle_noise": _f("sigma", [0.05, 0.15, 0.2, 0.35, 0.45]),
        "impulse_noise": _f("amount", [0.01, 0.03, 0.06, 0.09, 0.17]),
        "shot_noise": _f("photons", [60, 25, 18, 10, 5]),
        "defocus_blur": _pairs("radius", "alias_blur", [(4, 0.1), (5, 0.2), (6, 0.3), (7, 0.4), (8, 0.5)]),
        "motion_blur": _pairs("radius", "sigma", [(10, 5), (15, 5), (15, 8), (15, 12), (20, 15)]),
        # np.arange(1, stop, step) as in the reference
        "zoom_blur": _zoom([(1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)]),
        "brightness_up": _f("factor", [1.1, 1.2, 1.3, 1.4, 1.5]),
        "brightness_down": _f("factor", [0.9, 0.8, 0.7, 0.6, 0.5]),
        "contrast_up": _f("factor", [1.1, 1.2, 1.3, 1.4, 1.6]),
        "contrast_down": _f("factor", [0.8, 0.7, 0.6, 0.5, 0.4]),
        "black_corner": _f("radius_scale", [1.10, 1.05, 1.00, 0.90, 0.95]),
        "characters": [{"max_words": a, "max_letters": b, "max_font_scale": c}
                       for a, b, c in [(1, 6, 0.14), (2, 7, 0.15), (3, 8, 0.16), (4, 9, 0.17), (6, 10, 0.18)]],
    },
    "retinamnist": {
        "pixelate": _f("factor", [0.8, 0.60, 0.50, 0.40, 0.35]),
        "jpeg_compression": _f("quality", [30, 25, 20, 10, 5]),
        "gaussian_noise": _f("sigma", [0.04, 0.08, 0.12, 0.16, 0.20]),
        "speckle_noise": _f("sigma", [0.10, 0.15, 0.20, 0.25, 0.30]),
        "defocus_blur": _pairs("radius", "alias_blur", [(4, 0.1), (5, 0.2), (6, 0.3), (7, 0.4), (8, 0.5)]),
        "motion_blur": _pairs("radius", "sigma", [(8, 5), (15, 5), (15, 8), (15, 12), (20, 15)]),
        "brightness_down": _f("factor", [0.9, 0.8, 0.7, 0.6, 0.5]),
        "contrast_down": _f("factor", [0.9, 0.8, 0.7, 0.6, 0.4]),
    },
    "tissuemnist": {
        "pixelate": _f("factor", [0.40, 0.30, 0.20, 0.15, 0.10]),
        "jpeg_compression": _f("quality", [25, 20, 15, 10, 7]),
        "impulse_noise": _f("amount", [0.01, 0.015, 0.02, 0.025, 0.03]),
        "gaussian_blur": _f("kernel_size", [13, 15, 17, 21, 25]),
        "brightness_up": _f("factor", [1.3, 1.4, 1.5, 1.6, 1.7]),
        "brightness_down": _f("factor", [0.8, 0.7, 0.6, 0.5, 0.4]),
        "contrast_up": _f("factor", [1.1, 1.2, 1.3, 1.4, 1.6]),
        "contrast_down": _f("factor", [0.9, 0.8, 0.7, 0.6, 0.4]),
    },
    "octmnist": {
        "pixelate": _f("factor", [0.30, 0.25, 0.20, 0.15, 0.10]),
        "jpeg_compression": _f("quality", [30, 15, 10, 7, 5]),
        "speckle_noise": _f("sigma", [0.15, 0.30, 0.40, 0.50, 0.60]),
        "defocus_blur": _pairs("radius", "alias_blur", [(0.5, 0.6), (1, 0.5), (1.5, 0.1), (2.0, 0.5), (2.5, 0.1)]),
        "motion_blur": _pairs("radius", "sigma", [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)]),
        "contrast_down": _f("factor", [0.6, 0.4, 0.3, 0.2, 0.15]),
    },
    "breastmnist": {
        "pixelate": _f("factor", [0.30, 0.25, 0.20, 0.15, 0.10]),
        "jpeg_compression": _f("quality", [50, 30, 15, 10, 7]),
        "speckle_noise": _f("sigma", [0.10, 0.15, 0.20, 0.25, 0.30]),
        "motion_blur": _pairs("radius", "sigma", [(5, 5), (9, 7), (9, 10), (13, 10), (17, 12)]),
        "brightness_up": _f("factor", [1.4, 1.5, 1.6, 1.8, 2.0]),
        "brightness_down": _f("factor", [0.55, 0.5, 0.45, 0.4, 0.3]),
        "contrast_down": _f("factor", [0.9, 0.8, 0.7, 0.6, 0.4]),
    },
    "chestmnist": {
        "pixelate": _f("factor", [0.30, 0.25, 0.20, 0.15, 0.10]),
        "jpeg_compression": _f("quality", [50, 30, 15, 10, 7]),
        "gaussian_noise": _f("sigma", [0.04, 0.08, 0.12, 0.18, 0.26]),
        "speckle_noise": _f("sigma", [0.05, 0.15, 0.2, 0.35, 0.45]),
        "impulse_noise": _f("amount", [0.01, 0.03, 0.06, 0.09, 0.17]),
        "shot_noise": _f("photons", [60, 25, 18, 10, 5]),
        "gaussian_blur": _f("kernel_size", [3, 5, 7, 9, 11]),
        "brightness_up": _f("factor", [1.1, 1.2, 1.3, 1.4, 1.5]),
        "brightness_down": _f("factor", [0.9, 0.8, 0.7, 0.6, 0.5]),
        "contrast_up": _f("factor", [1.1, 1.2, 1.3, 1.4, 1.6]),
        "contrast_down": _f("factor", [0.9, 0.8, 0.7, 0.6, 0.4]),
        "gamma_corr_up": _f("gamma", [1.1, 1.2, 1.3, 1.4, 1.6]),
        "gamma_corr_down": _f("gamma", [0.9, 0.8, 0.7, 0.6, 0.4]),
    },
    "pneumoniamnist": {
        "pixelate": _f("factor", [0.8, 0.7, 0.6, 0.5, 0.40]),
        "jpeg_compression": _f("quality", [50, 30, 15, 10, 7]),
        "gaussian_noise": _f("sigma", [0.04, 0.05, 0.06, 0.07, 0.08]),
        "speckle_noise": _f("sigma", [0.05, 0.07, 0.10, 0.15, 0.20]),
        "impulse_noise": _f("amount", [0.005, 0.01, 0.013, 0.017, 0.02]),
        "shot_noise": _f("photons", [300, 200, 150, 100, 80]),
        "gaussian_blur": _f("kernel_size", [3, 5, 7, 9, 11]),
        "brightness_up": _f("factor", [1.1, 1.2, 1.3, 1.4, 1.5]),
        "brightness_down": _f("factor", [0.9, 0.8, 0.7, 0.6, 0.5]),
        "contrast_up": _f("factor", [1.1, 1.2, 1.3, 1.4, 1.6]),
        "contrast_down": _f("factor", [0.9, 0.8, 0.7, 0.6, 0.4]),
        "gamma_corr_up": _f("gamma", [1.1, 1.2, 1.3, 1.4, 1.6]),
        "gamma_corr_down": _f("gamma", [0.9, 0.8, 0.7, 0.6, 0.4]),
    },
    "organamnist": dict(_ORGAN),
    "organcmnist": dict(_ORGAN),
    "organsmnist": dict(_ORGAN),
}
assert all(list(v) == _GREY_13 for k, v in PUBLISHED_224.items() if k in ("chestmnist", "pneumoniamnist", "organamnist"))

# ------------------------------------------------------------------ 3D suite (medbench's own, defined at 28 px)

CORRUPTION_OPS_3D: dict[str, str] = {
    "gaussian_noise": "gaussian_noise", "impulse_noise": "impulse_noise", "gaussian_blur": "gaussian_blur",
    "brightness_up": "brightness", "brightness_down": "brightness", "contrast_up": "contrast",
    "contrast_down": "contrast", "gamma_up": "gamma", "gamma_down": "gamma",
    "downsample_upsample": "downsample_upsample",
}

SUITE_3D_28: dict[str, list[dict]] = {
    "gaussian_noise": _f("sigma", [0.02, 0.04, 0.06, 0.08, 0.12]),
    "impulse_noise": _f("amount", [0.005, 0.01, 0.02, 0.03, 0.05]),
    "gaussian_blur": _f("sigma", [0.5, 0.75, 1.0, 1.25, 1.5]),  # voxels at 28 px; scaled with the size
    # additive (an intensity offset), so that it also changes the binary-mask volumes (adrenal, vessel)
    "brightness_up": _f("shift", [0.05, 0.1, 0.15, 0.2, 0.3]),
    "brightness_down": _f("shift", [-0.05, -0.1, -0.15, -0.2, -0.3]),
    "contrast_up": _f("factor", [1.1, 1.2, 1.3, 1.4, 1.6]),  # no effect on binary masks (clips back to 0 / 1)
    "contrast_down": _f("factor", [0.9, 0.8, 0.7, 0.6, 0.4]),
    "gamma_up": _f("gamma", [1.1, 1.2, 1.3, 1.4, 1.6]),  # no effect on binary masks (0 and 1 are fixed points)
    "gamma_down": _f("gamma", [0.9, 0.8, 0.7, 0.6, 0.4]),
    # relative, the same at every size; factors whose size ratio is not a whole number, because block-aligned
    # ratios (0.5) alias less and broke the severity order on the real adrenal / vessel volumes
    "downsample_upsample": _f("factor", [0.75, 0.55, 0.45, 0.35, 0.25]),
}
SPATIAL_3D = {"gaussian_blur": ("sigma",)}  # parameters in voxels, scaled by size / 28

IDENTITY_3D: dict[str, dict] = {
    "gaussian_noise": {"sigma": 0.0}, "impulse_noise": {"amount": 0.0}, "gaussian_blur": {"sigma": 0.0},
    "brightness_up": {"shift": 0.0}, "brightness_down": {"shift": 0.0}, "contrast_up": {"factor": 1.0},
    "contrast_down": {"factor": 1.0}, "gamma_up": {"gamma": 1.0}, "gamma_down": {"gamma": 1.0},
    "downsample_upsample": {"factor": 1.0},
}


def corruption_names(dataset: str, is_3d: bool) -> list[str]:
    """The corruptions of a dataset's suite, in the reference order."""
    if is_3d:
        return list(SUITE_3D_28)
    if dataset not in PUBLISHED_224:
        raise KeyError(f"{dataset!r} has no MedMNIST-C corruption list; known: {', '.join(sorted(PUBLISHED_224))}.")
    return list(PUBLISHED_224[dataset])


def zoom_factors(p: dict) -> np.ndarray:
    return np.arange(1.0, p["stop"], p["step"])
