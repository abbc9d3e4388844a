"""The wheel ships the registry: build it, install it into a fresh environment, load a model in one line
from another directory, with the source tree nowhere on sys.path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from medbench import zoo
from medbench.data import get_spec

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "medbench", "model_zoo")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_wheel_install_loads_a_zoo_model_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDBENCH_ZOO", raising=False)
    zoo.clear_cache()
    bundled = [e for e in zoo.list_models() if any(s.kind == "bundled" for s in e.weights.sources)]
    assert bundled, "the registry needs at least one entry with bundled weights"
    entry = next((e for e in bundled if e.id == "Baseline_SmallCNN_ERM"), bundled[0])

    # 1. build the wheel from a copy of the source tree (no downloads: no build isolation)
    src = tmp_path / "src"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif (REPO / name).is_file():
            src.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path / "dist"), str(src)])
    wheel = next((tmp_path / "dist").glob("medbench-*.whl"))
    shutil.rmtree(src)  # the source tree is gone

    # 2. a fresh environment: the wheel installed alone; dependencies visible through a .pth path line
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)])
    site = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_outer_deps.pth").write_text("\n".join(sorted(deps)) + "\n")  # path lines only: no editable hooks

    # 3. one line, from another directory
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEDBENCH_ZOO", "PYTHONHOME")}
    env.update(MEDBENCH_CACHE=str(tmp_path / "cache"), HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    code = (f"import medbench; m = medbench.load_model({entry.id!r}, dataset={entry.dataset!r})\n"
            "import json, sys, torch\n"
            "from medbench.zoo import zoo_root\n"
            f"x = torch.rand(2, *medbench.get_spec({entry.dataset!r}).input_shape({entry.size}))\n"
            "print(json.dumps({'file': medbench.__file__, 'zoo': str(zoo_root()), 'path': sys.path,\n"
            "                  'training': m.training, 'shape': list(m(x).shape)}))")
    out = json.loads(run([str(py), "-c", code], cwd=elsewhere, env=env).stdout.strip().splitlines()[-1])
    assert Path(out["file"]).is_relative_to(venv), out["file"]
    assert Path(out["zoo"]) == Path(out["file"]).parent / "model_zoo"
    for p in filter(None, out["path"]):  # no sys.path entry exposes the source tree's package
        assert Path(p).resolve() != REPO and (Path(p).resolve().is_relative_to(venv)
                                              or not (Path(p) / "medbench").exists()), p
    assert out["training"] is False
    assert out["shape"] == [2, get_spec(entry.dataset).num_classes]

    # the console script works from the installed wheel too
    listing = run([str(venv / "bin" / "medbench"), "zoo", "list"], cwd=elsewhere, env=env).stdout
    assert entry.id in listing

    # the installed wheel builds the site from a results folder: templates and static files are package data
    results = elsewhere / "results" / entry.dataset
    results.mkdir(parents=True)
    committed = sorted((REPO / "leaderboard" / "results" / entry.dataset).glob("*.json"))
    assert committed, f"no committed results of {entry.dataset} to build a site from"
    for path in committed:
        shutil.copy(path, results / path.name)
    built = run([str(venv / "bin" / "medbench"), "leaderboard", "build", "--out", "site", "--results", "results",
                 "--strict"], cwd=elsewhere, env=env)
    assert "built " in built.stdout, built.stdout
    board = (elsewhere / "site" / entry.dataset / "index.html").read_text(encoding="utf-8")
    assert all(f'href="{p.stem}.html"' in board for p in committed)
    assert (elsewhere / "site" / "static" / "style.css").read_bytes() == \
        (REPO / "medbench" / "site" / "static" / "style.css").read_bytes()
    assert (elsewhere / "site" / "index.html").is_file() and (elsewhere / "site" / "protocol").is_dir()
