"""Folder variables and --data-root: a relative path names the folder it named when medbench read it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medbench import paths
from medbench.cli.common import absolute_folder
from medbench.zoo.registry import zoo_root

REPO = Path(__file__).resolve().parents[1]

READERS = {
    paths.ENV_DATA: paths.data_root,
    paths.ENV_CACHE: paths.cache_root,
    paths.ENV_LEADERBOARD: paths.leaderboard_root,
    paths.ENV_ZOO: zoo_root,
}


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_relative_folder_variable_survives_a_chdir(name, tmp_path, monkeypatch):
    (tmp_path / "here" / "folder").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    monkeypatch.setenv(name, "folder")
    first = READERS[name]()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert first == READERS[name]() == (tmp_path / "here" / "folder").resolve()
    assert os.environ[name] == str(tmp_path / "here" / "folder")  # child processes get the same folder


def test_the_readme_relative_export_is_absolute_once_medbench_is_imported(tmp_path):
    """The README's `export MEDBENCH_DATA=../shared/...`: a test or a subprocess that changes directory
    after ``import medbench`` still reads the same folder."""
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "repo").mkdir()
    code = ("import os, medbench; os.chdir('/'); from medbench.paths import data_root; "
            "print(data_root()); print(os.environ['MEDBENCH_DATA'])")
    env = {**os.environ, "MEDBENCH_DATA": "../shared/data", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "repo", env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    shared = tmp_path / "shared" / "data"
    assert out == [str(shared.resolve()), str(shared)]


def test_data_root_option_is_absolute_as_parsed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_folder("data") == str(tmp_path / "data")
    assert absolute_folder("~/x") == str(Path.home() / "x")
