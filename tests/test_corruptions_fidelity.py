"""medbench's MedMNIST-C operations against the ORIGINAL package (``medmnistc`` 0.1.0) at 224 px.

The original runs in its own virtual environment (bench/_medmnistc.py; interpreter from
$MEDBENCH_MEDMNISTC_PYTHON), on real test images upsampled to 224 px. Deterministic corruptions
must be pixel-exact (up to rare one-level rounding ties); random ones are run with the original's
own random draws replayed through medbench's operation, and must be pixel-exact or match the
original's PSNR within the tolerance (0.2 dB; characters, drawn with another font, 1 dB).
The full table (every dataset, corruption and severity) is bench/medmnistc_fidelity.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import need_real

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import _medmnistc  # noqa: E402
import medmnistc_fidelity as fidelity  # noqa: E402

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

# every operation at least once: dermamnist's set covers the noises, blurs (but gaussian), enhancements,
# black_corner and characters; pneumoniamnist the grey path, gaussian_blur and gamma; pathmnist the rest
CELLS = {
    "dermamnist": None,
    "pneumoniamnist": ["gaussian_noise", "speckle_noise", "impulse_noise", "shot_noise", "gaussian_blur",
                       "gamma_corr_up", "gamma_corr_down", "contrast_down"],
    "pathmnist": ["saturate", "stain_deposit", "bubble", "defocus_blur"],
}


@pytest.fixture(scope="module")
def original_available():
    reason = _medmnistc.probe()
    if reason:
        pytest.skip(f"the original medmnistc cannot run here: {reason}")


@pytest.fixture(scope="module")
def images(real_root):
    need_real(real_root, "pneumoniamnist.npz", "breastmnist.npz", "retinamnist.npz")
    return {"grey": fidelity.load_images(real_root, fidelity.GREY_SOURCES, 1),
            "rgb": fidelity.load_images(real_root, fidelity.RGB_SOURCES, 2)}


@pytest.mark.parametrize("dataset", list(CELLS))
def test_operations_match_the_original_at_224(original_available, images, dataset):
    import medbench

    family = "rgb" if medbench.get_spec(dataset).n_channels == 3 else "grey"
    rows = fidelity.compare(dataset, images[family], CELLS[dataset], severities=(1, 5))
    assert rows and all(r["same_params_as_original"] for r in rows), [r["corruption"] for r in rows
                                                                      if not r["same_params_as_original"]]
    off = [(r["corruption"], r["severity"], r["max_abs_diff"], r["frac_pixels_differ"], r["psnr_medbench_db"],
            r["psnr_original_db"]) for r in rows if r["verdict"] == "off"]
    assert not off, f"{dataset}: cells off the original (corruption, severity, max|d|, frac, PSNR ours, orig): {off}"
    # the comparison is not vacuous: severity 5 is stronger than severity 1 on both sides
    by = {(r["corruption"], r["severity"]): r for r in rows}
    for c in {r["corruption"] for r in rows if not r["random"] or r["corruption"].endswith("_noise")}:
        for side in ("psnr_medbench_db", "psnr_original_db"):
            assert by[(c, 5)][side] < by[(c, 1)][side], (c, side)
    # per-pixel noises with medbench's own random streams are as strong as the original's too
    for r in rows:
        if r["corruption"].endswith("_noise"):
            assert abs(r["psnr_medbench_own_draws_db"] - r["psnr_original_db"]) < fidelity.DEFAULT_TOLERANCE_DB, r
