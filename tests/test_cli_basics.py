"""The command line's plumbing: light start-up, clean pipes, clear errors for bad arguments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pandas", "matplotlib", "medmnist", "sklearn", "huggingface_hub", "pyautoattack", "scipy")


def _medbench(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "medbench", *args], capture_output=True, text=True, env=env,
                          cwd=kw.pop("cwd", REPO), **kw)


def test_cli_import_and_help_do_not_load_heavy_modules():
    """`medbench --help` must not pay for torch & co. (checked in a fresh interpreter via sys.modules)."""
    code = ("import sys, contextlib, io\n"
            "import medbench.cli\n"
            "p = medbench.cli.build_parser()\n"
            "for argv in (['--help'], ['evaluate', '--help'], ['zoo', 'list', '--help']):\n"
            "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "        medbench.cli.main(argv)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout.strip()
    assert out == "[]", f"heavy modules imported at CLI start-up: {out}"


def test_import_medbench_is_light_but_api_still_works():
    code = ("import sys, medbench\n"
            "assert 'torch' not in sys.modules, 'import medbench loaded torch'\n"
            "assert callable(medbench.benchmark) and 'breastmnist' in medbench.DATASETS\n"
            "print(medbench.__version__)\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
