"""``without_torchvision()``: import a package that imports torchvision, without importing torchvision.

timm 1.x and onnx2torch import torchvision at import time for names that building or converting a
model never uses (timm's data transforms; onnx2torch's NMS and RoiAlign converters). medbench never
imports torchvision (the wheel beside the CPU torch fails to import: ``operator torchvision::nms does
not exist``). Inside the context, ``torchvision`` and its submodules resolve to inert placeholders
(any use raises :class:`TorchvisionUnavailable`); on exit they are removed from ``sys.modules``, so a
later real ``import torchvision`` is unaffected. When torchvision is already imported (by the user),
the context does nothing and the package uses it as it is.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Iterator

from ..errors import MedbenchError

__all__ = ["TorchvisionUnavailable", "without_torchvision", "import_without_torchvision"]


class TorchvisionUnavailable(MedbenchError, RuntimeError):
    """A torchvision name was used through a package imported by medbench; medbench does not import torchvision."""


class _PlaceholderMeta(type):
    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(f"{cls.__qualname__}.{name}")

    def __call__(cls, *args, **kwargs):
        raise TorchvisionUnavailable(f"{cls.__qualname__} is part of torchvision, which medbench does not import "
                                     "(medbench feeds tensors in [0, 1] and uses no torchvision operator).")


def _placeholder(qualname: str) -> type:
    return _PlaceholderMeta(qualname.rsplit(".", 1)[-1], (), {"__qualname__": qualname, "__module__": "torchvision"})


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _placeholder(f"{self.__name__}.{name}")
        setattr(self, name, value)
        return value


class _TorchvisionPlaceholders(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _PlaceholderModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


@contextlib.contextmanager
def without_torchvision() -> Iterator[None]:
    """Within the block, ``import torchvision`` (and submodules) gives placeholders; removed on exit."""
    if "torchvision" in sys.modules:  # the user's own import: used as it is
        yield
        return
    finder = _TorchvisionPlaceholders()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            if isinstance(sys.modules[name], _PlaceholderModule):
                del sys.modules[name]


def import_without_torchvision(name: str, install_hint: str) -> types.ModuleType:
    """``import name`` inside :func:`without_torchvision` (once per process); a :class:`MedbenchError` ending
    with ``install_hint`` when the package is missing."""
    if name in sys.modules:
        return sys.modules[name]
    with without_torchvision():
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            raise MedbenchError(f"{install_hint} ({exc})") from None
