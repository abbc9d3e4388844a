"""Submissions by pull request: the schema of ``submissions/<ModelId>.yaml``, the validator and ``accept``.

>>> report = validate_submission("submissions/Smith2026Trades.yaml", reproduce=True)
>>> print(report.to_markdown())   # the pull-request comment
"""

from .accept import Accepted, accept_submission
from .evaluation import CLEAN_TOLERANCE, ReproduceSettings
from .report import Check, Report, combine_markdown
from .schema import Claimed, Submission, SubmissionError, parse_submission, read_submission
from .validate import validate_submission

__all__ = ["Accepted", "CLEAN_TOLERANCE", "Check", "Claimed", "Report", "ReproduceSettings", "Submission",
           "SubmissionError", "accept_submission", "combine_markdown", "parse_submission", "read_submission",
           "validate_submission"]
