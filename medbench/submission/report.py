"""Verdicts of the submission validator and their markdown rendering (a pull-request comment)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["pass", "fail", "skip"]
STAGES = ("schema", "metadata", "weights", "model", "admission", "reproduce", "sanity")
_ICON = {"pass": "✅ pass", "fail": "❌ FAIL", "skip": "⏭️ skipped"}


@dataclass
class Check:
    """One check: what was checked, its verdict, what was measured, and how to fix a failure."""

    stage: str
    name: str
    status: Status
    message: str
    fix: str = ""
    measured: float | str | None = None
    claimed: float | str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "fail"


@dataclass
class Report:
    """All verdicts for one submission file."""

    path: str
    model_id: str | None = None
    dataset: str | None = None
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, stage: str, name: str, ok: bool, message: str, fix: str = "", **values) -> Check:
        check = Check(stage, name, "pass" if ok else "fail", scrub_paths(message), "" if ok else scrub_paths(fix),
                      **values)
        self.checks.append(check)
        return check

    def skip(self, stage: str, name: str, why: str) -> None:
        self.checks.append(Check(stage, name, "skip", scrub_paths(why)))

    @property
    def passed(self) -> bool:
        return bool(self.checks) and not any(c.failed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.failed]

    def stage_failed(self, *stages: str) -> bool:
        return any(c.failed for c in self.checks if c.stage in stages)

    def ordered(self) -> list[Check]:
        """Checks grouped by stage, in pipeline order (stable within a stage)."""
        return sorted(self.checks, key=lambda c: STAGES.index(c.stage) if c.stage in STAGES else len(STAGES))

    def to_markdown(self) -> str:
        title = f"`{_code(self.model_id)}` ({_code(self.dataset or '?')})" if self.model_id else f"`{_code(self.path)}`"
        verdict = "✅ **passes**" if self.passed else f"❌ **fails** ({len(self.failures)} problem(s))"
        lines = [f"### medbench submission check: {title}", "", f"`{_code(self.path)}` {verdict}", ""]
        lines += ["| stage | check | result | details |", "|---|---|---|---|"]
        for c in self.ordered():
            lines.append(f"| {c.stage} | {_cell(c.name)} | {_ICON[c.status]} | {_cell(c.message)} |")
        numbers = [c for c in self.checks if c.measured is not None or c.claimed is not None]
        if numbers:
            lines += ["", "**Measured vs claimed**", "", "| metric | claimed | measured | result |", "|---|---|---|---|"]
            for c in numbers:
                lines.append(f"| {_cell(c.name)} | {_num(c.claimed)} | {_num(c.measured)} | {_ICON[c.status]} |")
        if self.failures:
            lines += ["", "**What to fix**", ""]
            lines += [f"- **{_cell(c.name)}**: {_cell(c.fix or c.message)}" for c in self.failures]
        if self.notes:
            lines += [""] + [f"> {_cell(n)}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def to_text(self) -> str:
        out = [f"{self.path}: {'PASS' if self.passed else 'FAIL'}"]
        for c in self.ordered():
            out.append(f"  [{c.status.upper():4}] {c.stage}/{c.name}: {c.message}")
            if c.failed and c.fix:
                out.append(f"         fix: {c.fix}")
        return "\n".join(out)


def combine_markdown(reports: list[Report]) -> str:
    """One comment for several files, with an overall verdict first."""
    ok = all(r.passed for r in reports)
    head = (f"## medbench submission validator: {'✅ all checks pass' if ok else '❌ changes needed'}\n\n"
            f"{len(reports)} file(s) checked.\n")
    return "\n".join([head] + [r.to_markdown() for r in reports])


# An absolute POSIX path of two or more components, not part of a URL or a fraction ("Linf-2/255").
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])(?:/[^\s'\"/,;()<>|]+){2,}")


def scrub_paths(text: str) -> str:
    """Replace absolute paths (cache folders, the runner's checkout) by their last component: reports are public."""
    return _ABSOLUTE_PATH.sub(lambda m: ".../" + m.group(0).rsplit("/", 1)[-1], text)


def _cell(text: object) -> str:
    """Text safe inside a markdown table cell: HTML escaped, pipes escaped, newlines joined."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = s.replace("|", "\\|").replace("`", "'")
    return re.sub(r"\s*\n\s*", " · ", s.strip())


def _code(text: object) -> str:
    return str(text).replace("`", "'").replace("\n", " ")


def _num(x: float | str | None) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4f}"
    return _cell(x)
