"""What a user installs: the README's install line, the site's home page and pyproject's extras agree, and a
user who only evaluates gets no test, browser or cluster tools."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _readme_install() -> str:
    block = README.split("## Install and run", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line.split("#")[0].strip() for line in block.splitlines() if line.startswith("pip install")]
    assert len(lines) == 1, f"the install block should have one pip line, has {lines}"
    return lines[0]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_readme_installs_what_evaluating_needs_and_nothing_more():
    line = _readme_install()
    assert line == "pip install -e .", line  # no [dev]: pytest, selenium, ray and captum are not a user's
    base = _names(PYPROJECT["project"]["dependencies"])
    assert {"torch", "pyautoattack", "medmnist"} <= base
    assert not base & {"ray", "selenium", "captum", "pytest", "pytest-xdist", "html5lib", "netcal", "torchmetrics"}, base
    extras = {k: _names(v) for k, v in PYPROJECT["project"]["optional-dependencies"].items()}
    assert extras["ray"] == {"ray"} and extras["studies"] == {"captum"}
    assert {"pytest", "selenium", "ray", "captum", "netcal", "torchmetrics"} <= extras["dev"]


def test_the_home_page_gives_the_readme_install_command():
    for page in (REPO / "medbench" / "site" / "templates" / "home.html", REPO / "site" / "index.html"):
        commands = re.findall(r"<code>(pip install[^<]*)</code>", page.read_text())
        assert commands == [_readme_install()], (page, commands)


def test_the_readme_says_how_to_get_a_cpu_or_gpu_torch():
    text = " ".join(README.split())
    assert "CPU-only build" in text and "CUDA build" in text and "install torch first" in text


def test_ci_installs_the_dev_extras():
    assert "-e '.[dev]'" in (REPO / ".ci" / "run").read_text()
