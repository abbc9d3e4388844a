"""One-figure overview of an :class:`EvaluationResult` (PNG, SVG or PDF, by the file's suffix).

Panels, for what the result measured: balanced accuracy per threat (clean and each AutoAttack threat
with their bootstrap CIs; the corruption mean has none), the corruption heatmap (corruption x
severity, in protocol order, values printed), balanced accuracy over Linf eps for APGD-CE and FGSM,
and over Gaussian-noise sigma. Every panel marks chance (1/K balanced accuracy). Matplotlib runs
headless (Agg); PNGs are written at 200 dpi.
"""

from __future__ import annotations

from pathlib import Path

from .schema.result import EvaluationResult

DPI = 200
BLUE, ORANGE, GREEN, GREY = "#3b6ea5", "#d9822b", "#4a9a5b", "#6b6b6b"


def _panels(result: EvaluationResult) -> list[str]:
    panels = ["summary"]
    if result.corruptions and result.corruptions.cells:
        panels.append("corruptions")
    if result.curves and (result.curves.apgd_ce or result.curves.fgsm):
        panels.append("eps")
    if result.curves and result.curves.noise:
        panels.append("noise")
    return panels


def _interval(ci) -> tuple[float, float] | None:
    if ci is None or ci.low is None or ci.high is None:
        return None
    return ci.low, ci.high


def _chance_line(ax, chance: float | None) -> None:
    if chance is not None:
        ax.axhline(chance, color=GREY, lw=0.9, ls="--", zorder=1, label=f"chance ({chance:.2f})")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best", frameon=False)


def _summary(ax, result: EvaluationResult) -> None:
    import numpy as np

    names, values, intervals, colours = [], [], [], []
    if result.clean:
        names.append("clean")
        values.append(result.clean.balanced_accuracy)
        intervals.append(_interval(result.clean.ci.get("balanced_accuracy")))
        colours.append(BLUE)
    if result.corruptions:
        names.append("corruptions\n(mean)")
        values.append(result.corruptions.balanced_accuracy)
        intervals.append(None)  # a mean over cells: no bootstrap interval, so no bar is drawn
        colours.append(GREEN)
    for threat, adv in result.adversarial.items():
        names.append(threat)
        values.append(adv.robust_balanced_accuracy)
        intervals.append(_interval(adv.robust_balanced_accuracy_ci))
        colours.append(ORANGE)
    x = np.arange(len(values))
    ax.bar(x, values, color=colours, width=0.65, zorder=2)
    for i, (v, iv) in enumerate(zip(values, intervals)):
        if iv is not None:
            ax.errorbar(i, v, yerr=[[max(0.0, v - iv[0])], [max(0.0, iv[1] - v)]], color="black", capsize=3,
                        lw=1, zorder=3)
        top = iv[1] if iv is not None else v
        ax.text(i, top + 0.015, f"{v:.3f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    has_ci = any(iv is not None for iv in intervals)
    ax.set_title("balanced accuracy" + (" (95% bootstrap CI)" if has_ci else ""), fontsize=10)


def _heatmap(ax, fig, result: EvaluationResult, chance: float | None) -> None:
    import numpy as np

    cells = result.corruptions.cells
    names = list(dict.fromkeys([*result.corruptions.per_corruption, *(c.corruption for c in cells)]))
    severities = sorted({c.severity for c in cells})
    grid = np.full((len(names), len(severities)), np.nan)
    for c in cells:
        grid[names.index(c.corruption), severities.index(c.severity)] = c.balanced_accuracy
    # colour range: from chance (or the worst cell, if below) to the clean accuracy (or the best cell)
    lo = float(np.nanmin(grid))
    if chance is not None:
        lo = min(lo, chance)
    hi = float(np.nanmax(grid))
    if result.clean:
        hi = max(hi, result.clean.balanced_accuracy)
    lo, hi = max(0.0, np.floor(lo * 20) / 20), min(1.0, np.ceil(hi * 20) / 20)
    if hi - lo < 0.1:
        lo = max(0.0, hi - 0.1)
    im = ax.imshow(grid, vmin=lo, vmax=hi, cmap="viridis", aspect="auto")
    norm = im.norm
    for (i, j), v in np.ndenumerate(grid):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                    color="black" if norm(v) > 0.6 else "white")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xticks(range(len(severities)), [str(s) for s in severities], fontsize=8)
    ax.set_xlabel("severity")
    ax.set_title(f"corruptions ({result.corruptions.suite})", fontsize=10)
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    bar.ax.tick_params(labelsize=7)
    if result.clean:
        bar.ax.axhline(result.clean.balanced_accuracy, color="white", lw=1.5)
        bar.ax.axhline(result.clean.balanced_accuracy, color="black", lw=0.6)
    bar.set_label("balanced accuracy" + (" (line: clean)" if result.clean else ""), fontsize=8)


def _categorical(ax, xs: list[float], label: str) -> None:
    ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs], fontsize=8)
    ax.set_xlabel(label)


def _eps(ax, result: EvaluationResult) -> None:
    eps = sorted({round(p.x * 255, 4) for p in (*result.curves.apgd_ce, *result.curves.fgsm)})
    for name, points, colour in (("APGD-CE", result.curves.apgd_ce, ORANGE), ("FGSM", result.curves.fgsm, BLUE)):
        if points:
            pts = sorted(points, key=lambda p: p.x)
            ax.plot([eps.index(round(p.x * 255, 4)) for p in pts], [p.balanced_accuracy for p in pts], marker="o",
                    ms=4, color=colour, label=name, zorder=3)
    _categorical(ax, eps, "Linf eps (x/255; points evenly spaced)")
    ax.set_title(f"attack strength (n={result.curves.subset.n})", fontsize=10)


def _noise(ax, result: EvaluationResult) -> None:
    pts = sorted(result.curves.noise, key=lambda p: p.x)
    # sigma 0 is the unattacked subset: the eps-0 point of the APGD-CE curve, when it was measured
    zero = [p for p in result.curves.apgd_ce if p.x == 0]
    xs = ([0.0] if zero else []) + [p.x for p in pts]
    ys = ([zero[0].balanced_accuracy] if zero else []) + [p.balanced_accuracy for p in pts]
    ax.plot(range(len(xs)), ys, marker="o", ms=4, color=GREEN, zorder=3)
    _categorical(ax, xs, "Gaussian noise sigma (points evenly spaced)")
    ax.set_title(f"random noise (n={result.curves.subset.n})", fontsize=10)


def plot_result(result: EvaluationResult, path: str | Path) -> Path:
    """Draw the overview of ``result`` to ``path``; returns the path. Needs at least clean metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if result.clean is None and not result.adversarial and not result.corruptions:
        raise ValueError("The result has nothing to plot: evaluate at least the 'clean' threat.")
    panels = _panels(result)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    title = (f"{result.model_id or 'unnamed model'} on {result.dataset} ({result.size} px), "
             f"medbench protocol {result.provenance.protocol_version}")
    fig.suptitle(title, fontsize=11)
    chance = None if result.task.startswith("multi-label") else 1.0 / result.num_classes
    for ax, panel in zip(axes[0], panels):
        if panel == "summary":
            _summary(ax, result)
        elif panel == "corruptions":
            _heatmap(ax, fig, result, chance)
        elif panel == "eps":
            _eps(ax, result)
        else:
            _noise(ax, result)
        if panel != "corruptions":
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("balanced accuracy", fontsize=9)
            ax.tick_params(axis="y", labelsize=8)
            _chance_line(ax, chance)
            ax.grid(axis="y", alpha=0.3, zorder=0)
            ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out
