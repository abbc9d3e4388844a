"""Reliability diagrams and risk-coverage curves of several conditions (e.g. clean and corrupted) on
one figure, drawn with matplotlib (headless) in the style of :mod:`medbench.plots`; the file's
suffix picks the format (SVG for the site)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..plots import BLUE, GREEN, GREY, ORANGE
from .metrics import ReliabilityDiagram, RiskCoverage

COLOURS = (BLUE, ORANGE, GREEN, "#8e5ea2", "#c44e52", "#937860")

__all__ = ["plot_reliability", "plot_risk_coverage"]


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    return plt, fig, ax


def _finish(plt, fig, ax, title: str, path: str | Path) -> Path:
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3, zorder=0)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7, loc="best", frameon=False)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _check(curves: Mapping) -> None:
    if not curves:
        raise ValueError("Nothing to plot: pass at least one named curve.")


def plot_reliability(diagrams: Mapping[str, ReliabilityDiagram], path: str | Path, *,
                     title: str = "reliability (equal-mass bins)") -> Path:
    """Outcome rate against mean confidence per bin for each named diagram (marker area ~ count),
    with the diagonal of perfect calibration; writes ``path`` and returns it. Raises ValueError when
    ``diagrams`` is empty."""
    import numpy as np

    _check(diagrams)
    plt, fig, ax = _figure()
    ax.plot([0, 1], [0, 1], color=GREY, lw=0.9, ls="--", zorder=1, label="perfect calibration")
    for i, (name, diagram) in enumerate(diagrams.items()):
        filled = diagram.count > 0
        colour = COLOURS[i % len(COLOURS)]
        area = 12 + 60 * diagram.count[filled] / max(1, diagram.count.max())
        x, y = diagram.confidence[filled], diagram.accuracy[filled]
        ax.plot(x, y, color=colour, lw=1.2, zorder=2, label=name)
        ax.scatter(x, y, s=np.asarray(area), color=colour, zorder=3)
    ax.set_xlim(0, 1), ax.set_ylim(0, 1.02)
    ax.set_xlabel("mean confidence", fontsize=9)
    ax.set_ylabel("observed accuracy (outcome rate)", fontsize=9)
    return _finish(plt, fig, ax, title, path)


def plot_risk_coverage(curves: Mapping[str, RiskCoverage], path: str | Path, *,
                       title: str = "risk-coverage") -> Path:
    """Error rate of the kept examples against coverage for each named curve; writes ``path`` and
    returns it. Raises ValueError when ``curves`` is empty."""
    _check(curves)
    plt, fig, ax = _figure()
    for i, (name, curve) in enumerate(curves.items()):
        ax.step(curve.coverage, curve.risk, where="post", color=COLOURS[i % len(COLOURS)], lw=1.2,
                label=name)
    ax.set_xlim(0, 1), ax.set_ylim(bottom=0)
    ax.set_xlabel("coverage", fontsize=9)
    ax.set_ylabel("risk (error rate of the kept examples)", fontsize=9)
    return _finish(plt, fig, ax, title, path)
