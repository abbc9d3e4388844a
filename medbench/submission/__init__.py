"""Submissions by pull request: the schema of ``submissions/<ModelId>.yaml``, the validator and ``accept``.

>>> report = validate_submission("submissions/Smith2026Trades.yaml", reproduce=True)
>>> print(report.to_markdown())   # the pull-request comment
>>> attack = verify_attack_submission("submissions/attacks/Smith2026FMN.yaml")  # adversarial examples
"""

from .accept import Accepted, accept_submission
from .attack import AttackReport, looks_like_attack_submission, verify_attack_submission
from .attack_apply import RecordedAttack, record_verified_attack
from .evaluation import CLEAN_TOLERANCE, ReproduceSettings
from .report import Check, Report, combine_markdown
from .schema import Claimed, Submission, SubmissionError, parse_submission, read_submission
from .validate import validate_submission

__all__ = ["Accepted", "AttackReport", "CLEAN_TOLERANCE", "Check", "Claimed", "RecordedAttack", "Report",
           "ReproduceSettings", "Submission", "SubmissionError", "accept_submission", "combine_markdown",
           "looks_like_attack_submission", "parse_submission", "read_submission", "record_verified_attack",
           "validate_submission", "verify_attack_submission"]
