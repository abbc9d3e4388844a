"""One-figure overview of an :class:`EvaluationResult` (PNG, SVG or PDF, by the file's suffix).

Panels, for what the result measured: balanced accuracy per threat (clean with its CI, corruptions,
each AutoAttack threat); the corruption heatmap (corruption x severity); balanced accuracy over Linf
eps for APGD-CE and FGSM; balanced accuracy over Gaussian-noise sigma. Matplotlib runs headless (Agg).
"""

from __future__ import annotations

from pathlib import Path

from .schema.result import EvaluationResult


def _panels(result: EvaluationResult) -> list[str]:
    panels = ["summary"]
    if result.corruptions and result.corruptions.cells:
        panels.append("corruptions")
    if result.curves and (result.curves.apgd_ce or result.curves.fgsm):
        panels.append("eps")
    if result.curves and result.curves.noise:
        panels.append("noise")
    return panels


def _err(value: float, ci) -> tuple[float, float]:
    """Error-bar lengths below and above ``value`` (none where the interval is missing)."""
    if ci is None or ci.low is None or ci.high is None:
        return 0.0, 0.0
    return max(0.0, value - ci.low), max(0.0, ci.high - value)


def plot_result(result: EvaluationResult, path: str | Path) -> Path:
    """Draw the overview of ``result`` to ``path``; returns the path. Needs at least clean metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if result.clean is None and not result.adversarial and not result.corruptions:
        raise ValueError("The result has nothing to plot: evaluate at least the 'clean' threat.")
    panels = _panels(result)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.0), squeeze=False)
    title = (f"{result.model_id or 'model'} on {result.dataset} ({result.size}px), "
             f"medbench protocol {result.provenance.protocol_version}")
    fig.suptitle(title, fontsize=11)
    chance = None if result.task.startswith("multi-label") else 1.0 / result.num_classes
    for ax, panel in zip(axes[0], panels):
        if panel == "summary":
            names, values, errs = [], [], []
            if result.clean:
                c = result.clean
                ci = c.ci.get("balanced_accuracy")
                names.append("clean")
                values.append(c.balanced_accuracy)
                errs.append(_err(c.balanced_accuracy, ci))
            if result.corruptions:
                names.append("corruptions")
                values.append(result.corruptions.balanced_accuracy)
                errs.append((0, 0))
            for threat, adv in result.adversarial.items():
                ci = adv.robust_balanced_accuracy_ci
                names.append(threat)
                values.append(adv.robust_balanced_accuracy)
                errs.append(_err(adv.robust_balanced_accuracy, ci))
            ax.bar(range(len(values)), values, yerr=np.array(errs).T, capsize=3, color="#4c72b0")
            ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
            ax.set_title("balanced accuracy (95% CI)", fontsize=10)
        elif panel == "corruptions":
            cells = result.corruptions.cells
            names = sorted({c.corruption for c in cells})
            severities = sorted({c.severity for c in cells})
            grid = np.full((len(names), len(severities)), np.nan)
            for c in cells:
                grid[names.index(c.corruption), severities.index(c.severity)] = c.balanced_accuracy
            im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
            ax.set_yticks(range(len(names)), names, fontsize=7)
            ax.set_xticks(range(len(severities)), [str(s) for s in severities])
            ax.set_xlabel("severity")
            ax.set_title(f"corruptions ({result.corruptions.suite}): balanced accuracy", fontsize=10)
            fig.colorbar(im, ax=ax, fraction=0.046)
        elif panel == "eps":
            for name, points in (("APGD-CE", result.curves.apgd_ce), ("FGSM", result.curves.fgsm)):
                if points:
                    pts = sorted(points, key=lambda p: p.x)
                    ax.plot([p.x * 255 for p in pts], [p.balanced_accuracy for p in pts], marker="o", label=name)
            ax.set_xlabel("Linf eps (x/255)")
            ax.set_title("attack strength", fontsize=10)
            ax.legend(fontsize=8)
        else:
            pts = sorted(result.curves.noise, key=lambda p: p.x)
            ax.plot([p.x for p in pts], [p.balanced_accuracy for p in pts], marker="o", color="#55a868")
            ax.set_xlabel("Gaussian noise sigma")
            ax.set_title("random noise", fontsize=10)
        if panel != "corruptions":
            ax.set_ylim(0, 1.02)
            ax.set_ylabel("balanced accuracy")
            if chance is not None:
                ax.axhline(chance, color="grey", lw=0.8, ls="--")
            ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
