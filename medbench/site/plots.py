"""The plots of the site, built from results: per-dataset scatter, and a model page's figures."""

from __future__ import annotations

from markupsafe import Markup

from .. import svg
from ..calibration.figures import calibration_figures
from ..schema.result import EvaluationResult
from .marks import chance_level, threat_label
from .table import Track


def _point_class(method: str) -> str:
    return "pt adv" if method in ("pgd-at", "trades") else "pt"


def track_scatters(track: Track) -> list[Markup]:
    """Clean vs robust (the ranking threat) and clean vs corruption balanced accuracy."""
    out = []
    pairs = []
    if track.rank_by != "clean":
        pairs.append((track.rank_by, lambda r: r.robust(track.rank_by)[0], f"robust BA, {threat_label(track.rank_by)} (%)"))
    pairs.append(("corruptions", lambda r: r.corruption_ba, "corruption BA (%)"))
    for name, get, ylabel in pairs:
        pts = [svg.Point(r.clean_ba, get(r), r.model_id, f"{r.slug}.html", _point_class(r.method))
               for r in track.rows if r.clean_ba is not None and get(r) is not None]
        if pts:
            out.append(svg.scatter(pts, xlabel="clean balanced accuracy (%)", ylabel=ylabel,
                                   title=f"{track.dataset}: clean vs {threat_label(name)} balanced accuracy, {len(pts)} models",
                                   chance=chance_level(track.dataset)))
    return out


def _eps_label(x: float) -> str:
    return f"{x * 255:.3g}"


def model_figures(res: EvaluationResult) -> dict[str, Markup]:
    """Heatmap, eps curves (APGD-CE, FGSM), noise curve, per-class recall bars and calibration, where measured."""
    figs: dict[str, Markup | None] = dict.fromkeys(("heatmap", "eps", "noise", "recall"))
    ch = chance_level(res.dataset)
    if res.corruptions and res.corruptions.cells:
        rows = list(dict.fromkeys(c.corruption for c in res.corruptions.cells))
        cols = sorted({c.severity for c in res.corruptions.cells})
        vals = {(c.corruption, str(c.severity)): c.balanced_accuracy for c in res.corruptions.cells}
        figs["heatmap"] = svg.heatmap(rows, [str(c) for c in cols], vals,
                                      title="balanced accuracy (%) per corruption and severity", lo=ch)
    if res.curves and (res.curves.apgd_ce or res.curves.fgsm):
        xs = sorted({p.x for p in res.curves.apgd_ce} | {p.x for p in res.curves.fgsm})
        idx = {x: i for i, x in enumerate(xs)}
        series = [svg.Series(name, cls, [(idx[p.x], p.balanced_accuracy) for p in sorted(pts, key=lambda p: p.x)])
                  for name, cls, pts in (("APGD-CE", "s0", res.curves.apgd_ce), ("FGSM", "s1", res.curves.fgsm)) if pts]
        figs["eps"] = svg.line_chart([_eps_label(x) for x in xs], series,
                                     xlabel="L∞ eps (/255), equally spaced, not to scale",
                                     ylabel="balanced accuracy (%)", chance=ch,
                                     title="balanced accuracy under APGD-CE and FGSM as eps grows")
    if res.curves and res.curves.noise:
        pts = [(p.x, p.balanced_accuracy) for p in sorted(res.curves.noise, key=lambda p: p.x)]
        # the clean point: eps 0 of the APGD-CE curve is the same subset without perturbation
        clean = [p.balanced_accuracy for p in res.curves.apgd_ce if p.x == 0]
        if clean and pts[0][0] > 0:
            pts.insert(0, (0.0, clean[0]))
        figs["noise"] = svg.line_chart([f"{x:g}" for x, _ in pts],
                                       [svg.Series("Gaussian noise", "s2", [(i, v) for i, (_, v) in enumerate(pts)])],
                                       xlabel="noise sigma, equally spaced, not to scale", ylabel="balanced accuracy (%)",
                                       chance=ch,
                                       title="balanced accuracy under Gaussian noise")
    if res.clean and res.clean.per_class_recall:
        names = list(res.clean.per_class_recall)
        figs["recall"] = svg.bars(names, [res.clean.per_class_recall[n] for n in names],
                                  title="clean recall per class (%)", chance=None)
    return {**figs, **calibration_figures(res)}
