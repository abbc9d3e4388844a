"""Build hook (all metadata lives in pyproject.toml): ship the top-level ``model_zoo/`` registry inside
the wheel as ``medbench/model_zoo/`` so ``medbench.load_model`` works after ``pip install``.
Editable installs read ``model_zoo/`` from the checkout instead (see ``medbench.zoo.registry.zoo_root``)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ZOO = Path(__file__).resolve().parent / "model_zoo"
SHIPPED = (".yaml", ".yml", ".safetensors")  # entries and bundled weights; training logs etc. stay out


def _not_shipped(folder, names):
    return [n for n in names if n.startswith(".") or (not (Path(folder) / n).is_dir() and not n.endswith(SHIPPED))]


class BuildPyWithZoo(build_py):
    def run(self):
        super().run()
        if ZOO.is_dir() and not getattr(self, "editable_mode", False):
            target = Path(self.build_lib) / "medbench" / "model_zoo"
            shutil.copytree(ZOO, target, dirs_exist_ok=True, ignore=_not_shipped)


setup(cmdclass={"build_py": BuildPyWithZoo})
