"""The README is the front door: its commands must stay true."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Run the tests", 1)[1]
    test_cmd = _bash_blocks(section)[0].strip()
    ci = (REPO / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines() or any(line.strip() == test_cmd for line in ci.splitlines())


def test_readme_cli_commands_exist():
    """Every `medbench <group> ...` in the README names a real command group."""
    from medbench.cli import build_parser

    parser = build_parser()
    groups = set(parser._subparsers._group_actions[0].choices)  # noqa: SLF001 (argparse has no public API)
    readme = (REPO / "README.md").read_text()
    used = set(re.findall(r"^\s*medbench ([a-z]+)", "\n".join(_bash_blocks(readme)), flags=re.M))
    assert used and used <= groups, f"README uses unknown commands: {used - groups}"
