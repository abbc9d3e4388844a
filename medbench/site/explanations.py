"""The explanation-stability study's results by model, for the model pages (maps) and the boards (a column).

Read from ``<studies>/explanation-stability/*.json``; a file that does not validate is left out here (the
study pages report it as a build problem).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..studies.explanation_stability import HEADLINE, METHOD_LABEL, STUDY, Details, ModelScores, Score



@dataclass(frozen=True)
class ModelExplanation:
    """One model's scores and maps, with the study's shown images (what a model page draws)."""

    dataset: str
    size: int
    model: ModelScores
    details: Details
    options: dict

    @property
    def headline(self) -> Score | None:
        """The board column: the headline method's stability under the adversarial perturbation."""
        m = self.model.method(HEADLINE)
        return m.adversarial if m else None

    def label(self, method: str) -> str:
        return METHOD_LABEL[method]


class Explanations(dict):
    """(dataset, size, model id) -> :class:`ModelExplanation`; ``of(row, size)`` for templates."""

    def of(self, row, size: int) -> ModelExplanation | None:
        """The study's result for a board row, if it was computed on the weights the registry lists."""
        ex = self.get((row.dataset, size, row.model_id))
        if ex is None or (row.entry is not None and ex.model.weights_sha256 != row.entry.weights.sha256):
            return None
        return ex

    def any(self, rows, size: int) -> bool:
        return any(self.of(r, size) is not None for r in rows)


def load_explanations(studies_root: str | Path) -> Explanations:
    """(dataset, size, model id) -> that model's explanation-stability scores and maps."""
    from ..studies import load_result

    out = Explanations()
    folder = Path(studies_root) / STUDY.name
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            result = load_result(path)
        except Exception:  # noqa: BLE001 - reported by the study pages
            continue
        for m in result.details.models:
            out[(result.dataset, result.size, m.model_id)] = ModelExplanation(
                result.dataset, result.size, m, result.details, dict(result.provenance.options))
    return out
