"""A result's calibration as the site's SVG figures: reliability diagram and risk-coverage curve, clean,
corrupted (every corrupted copy) and at the headline attack on one figure each."""

from __future__ import annotations

from markupsafe import Markup

from .. import svg

__all__ = ["calibration_figures"]


def _conditions(result) -> list[tuple[str, object]]:
    """(label, CalibrationMetrics) of each measured condition, in a fixed order."""
    out = []
    if result.clean and result.clean.calibration:
        out.append(("clean", result.clean.calibration))
    if result.corruptions and result.corruptions.calibration:
        out.append(("corrupted (all copies)", result.corruptions.calibration["all"]))
    for threat, section in sorted(result.adversarial.items()):
        if section.calibration:
            out.append((f"under attack, {threat} (subset)", section.calibration))
    return out


def calibration_figures(result) -> dict[str, Markup]:
    """``{"reliability": svg, "risk_coverage": svg}`` for a result of protocol 4 or later; {} before, and for
    multi-label tasks (one diagram per label)."""
    conditions = [(name, cal) for name, cal in _conditions(result) if cal.reliability and cal.risk_coverage]
    if not conditions:
        return {}
    figs = {}
    bins = len(conditions[0][1].reliability.accuracy)
    series = []
    for k, (name, cal) in enumerate(conditions):
        rel = cal.reliability
        series.append(svg.Series(f"{name}: observed", f"k{k}",
                                 [(i, a) for i, a in enumerate(rel.accuracy) if a is not None]))
        series.append(svg.Series(f"{name}: confidence", f"k{k} dash",
                                 [(i, c) for i, c in enumerate(rel.confidence) if c is not None]))
    figs["reliability"] = svg.line_chart(
        [str(i + 1) for i in range(bins)], series,
        xlabel=f"probability bin, low to high (1/{bins} of the images each)",
        ylabel="rate (%)", chance=None,
        title="reliability: observed rate vs mean confidence per bin (calibrated: the two lines meet)")
    coverage = conditions[0][1].risk_coverage.coverage
    shown = [i for i, c in enumerate(coverage) if abs(c * 10 - round(c * 10)) < 1e-9]  # 0.1, 0.2, ..., 1 (readable)
    figs["risk_coverage"] = svg.line_chart(
        [f"{coverage[i]:g}" for i in shown],
        [svg.Series(name, f"k{k}", [(j, cal.risk_coverage.risk[i]) for j, i in enumerate(shown)])
         for k, (name, cal) in enumerate(conditions)],
        xlabel="coverage (most confident share kept)", ylabel="error rate (%)", chance=None,
        title="risk-coverage: error rate of the images kept as the least confident are set aside")
    return figs
