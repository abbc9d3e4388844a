"""The overview figure: one panel per measured part of a result, written where the user asked."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from medbench.cli import main
from medbench.schema import EvaluationResult

from conftest import need_real

REPO = Path(__file__).resolve().parents[1]
RESULTS = sorted((REPO / "leaderboard" / "results").glob("*/*.json"))


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


def _full_result() -> EvaluationResult:
    for path in RESULTS:
        r = EvaluationResult.from_json(path)
        if r.clean and r.corruptions and r.adversarial and r.curves:
            return r
    pytest.skip("no committed full-protocol result in leaderboard/results/")


def test_one_panel_per_measured_part(tmp_path):
    full = _full_result()
    w_full, h_full = _png_size(full.plot(tmp_path / "full.png"))
    clean_only = full.model_copy(update={"corruptions": None, "curves": None, "adversarial": {}})
    w_clean, h_clean = _png_size(clean_only.plot(tmp_path / "nested" / "clean.png"))
    assert h_full == h_clean and w_full == pytest.approx(4 * w_clean, rel=0.01)
    svg = full.plot(tmp_path / "full.svg").read_text()
    assert "<svg" in svg and full.model_id in svg and "Linf-2/255" in svg


@pytest.mark.realdata
def test_cli_evaluate_plot_flag_writes_the_figure(real_root, tmp_path, capsys):
    need_real(real_root, "breastmnist.npz")
    fig = tmp_path / "figs" / "clean.png"
    code = main(["evaluate", "Baseline_SmallCNN_ERM", "--dataset", "breastmnist", "--threats", "clean", "--quiet",
                 "--plot", str(fig), "--data-root", str(real_root)])
    assert code == 0, capsys.readouterr().err
    assert f"figure written to {fig}" in capsys.readouterr().out
    width, height = _png_size(fig)
    assert width < height * 2  # clean only: the single summary panel


def test_nothing_to_plot_is_a_clear_error(tmp_path):
    empty = _full_result().model_copy(update={"clean": None, "corruptions": None, "curves": None, "adversarial": {}})
    with pytest.raises(ValueError, match="evaluate at least the 'clean' threat"):
        empty.plot(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
