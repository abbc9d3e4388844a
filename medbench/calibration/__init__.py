"""Calibration (ECE with equal-mass bins, Brier, NLL), selective prediction (risk-coverage, AURC,
accuracy at a coverage) and post-hoc temperature scaling, with bootstrap CIs from the resample
engine of :mod:`medbench.metrics`.

The engine calls :func:`calibration_summary` on logits it already has; the other functions take
(labels, probabilities, task) with the task strings and probability semantics of
:mod:`medbench.metrics`. Figures: :mod:`medbench.calibration.plots` (matplotlib, for papers) and
:mod:`medbench.calibration.figures` (the site's SVG); neither is imported here, so evaluating never loads them.
"""

from .metrics import (COVERAGE, N_BINS, SCORE_NAMES, ExampleScores, ReliabilityDiagram,
                      RiskCoverage, aurc, bootstrap_calibration, brier_score, example_scores,
                      expected_calibration_error, negative_log_likelihood, per_label_scores,
                      reliability_diagram, risk_coverage_curve, selective_accuracy, weighted_scores)
from .summary import calibration_summary
from .temperature import fit_temperature, logits_nll

__all__ = [
    "COVERAGE", "N_BINS", "SCORE_NAMES", "ExampleScores", "ReliabilityDiagram", "RiskCoverage",
    "aurc", "bootstrap_calibration", "brier_score", "calibration_summary", "example_scores",
    "expected_calibration_error", "fit_temperature", "logits_nll", "negative_log_likelihood",
    "per_label_scores", "reliability_diagram",
    "risk_coverage_curve", "selective_accuracy", "weighted_scores",
]
