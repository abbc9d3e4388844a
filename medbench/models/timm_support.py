"""``timm/<name>`` architectures: any timm model, built without pretrained weights, kwargs checked first.

An entry or submission may say ``architecture: timm/resnet18`` with ``architecture_kwargs``; the model is
``timm.create_model(name, pretrained=False, num_classes=..., in_chans=..., **kwargs)`` behind medbench's
``Normalize`` first layer (inputs in [0, 1]), and its weights come from the entry's safetensors file,
loaded strictly. Nothing is ever downloaded: ``pretrained`` is refused.

Keyword arguments are checked before anything is built against :data:`TIMM_KWARGS` (an allowlist with
types and inclusive ranges); the parameter count is then estimated on the ``meta`` device and bounded
by :data:`MAX_TIMM_PARAMETERS`, so ``embed_dim: 100000`` is refused without allocating it.

Why the import shim: timm 1.x imports torchvision at import time, and not only in ``timm.data``:
``timm.layers.create_norm`` and ``timm.layers.norm_act`` import ``torchvision.ops.misc.FrozenBatchNorm2d``,
and every ``timm.models`` module imports ``timm.data`` (for its constants), whose ``__init__`` imports
``torchvision.transforms`` and ``torchvision.datasets``. medbench never imports torchvision (the PyPI
wheel beside the CPU torch fails to import: ``operator torchvision::nms does not exist``), and building a
model uses none of those names. So while timm is imported, ``torchvision`` and its submodules resolve to
inert placeholders (any use raises :class:`TorchvisionUnavailable`); they are removed from
``sys.modules`` afterwards, so a later real ``import torchvision`` is unaffected. When torchvision is
already imported (by the user), timm uses it as it is.
"""

from __future__ import annotations

import difflib
import importlib.abc
import importlib.machinery
import math
import sys
import types
from typing import Any

import torch
from torch import nn

from ..errors import MedbenchError

PREFIX = "timm/"
MAX_TIMM_PARAMETERS = 50_000_000  # a CPU benchmark; medbench.submission.static caps submissions further

Range = tuple[float, float]
# kwarg -> (kind, range). The allowlist: shape and regularisation settings of timm's families. Anything else
# (pretrained, checkpoint_path, pretrained_cfg, features_only, norm/act layer objects...) is refused.
TIMM_KWARGS: dict[str, tuple[type, Range | None]] = {
    "img_size": (int, (8, 512)),
    "patch_size": (int, (1, 64)),
    "embed_dim": (int, (8, 2048)),
    "depth": (int, (1, 48)),
    "num_heads": (int, (1, 32)),
    "mlp_ratio": (float, (0.25, 8.0)),
    "qkv_bias": (bool, None),
    "class_token": (bool, None),
    "global_pool": (str, None),
    "drop_rate": (float, (0.0, 0.9)),
    "drop_path_rate": (float, (0.0, 0.9)),
    "attn_drop_rate": (float, (0.0, 0.9)),
    "proj_drop_rate": (float, (0.0, 0.9)),
    "width_multiplier": (float, (0.05, 4.0)),
    "channel_multiplier": (float, (0.05, 4.0)),
    "depth_multiplier": (float, (0.05, 4.0)),
    "output_stride": (int, (8, 32)),
    "stem_width": (int, (8, 256)),
    "base_width": (int, (8, 256)),
    "cardinality": (int, (1, 64)),
    "ls_init_value": (float, (0.0, 1.0)),
}
GLOBAL_POOLS = ("", "avg", "max", "avgmax", "catavgmax", "token", "map")
LIST_KWARGS: dict[str, tuple[type, Range, int]] = {  # kwarg -> (item kind, item range, max length)
    "depths": (int, (1, 48), 8),
    "dims": (int, (8, 2048), 8),
    "embed_dims": (int, (8, 2048), 8),
    "channels": (int, (8, 2048), 8),
    "layers": (int, (1, 48), 8),
}
FORBIDDEN = {
    "pretrained": "pretrained weights are never downloaded; the weights come from the entry's safetensors file",
    "pretrained_cfg": "pretrained configurations are not used (nothing is downloaded)",
    "pretrained_cfg_overlay": "pretrained configurations are not used (nothing is downloaded)",
    "checkpoint_path": "weights come from the entry's safetensors file, never from a checkpoint path",
    "cache_dir": "nothing is downloaded",
    "features_only": "the model must return logits",
    "num_classes": "set by medbench from the dataset",
    "in_chans": "set by medbench from the dataset",
}
_KIND_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


class TorchvisionUnavailable(MedbenchError, RuntimeError):
    """A torchvision name was used through timm; medbench does not import torchvision."""


class UnknownTimmModelError(MedbenchError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# ----------------------------------------------------------------------------- importing timm

class _PlaceholderMeta(type):
    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(f"{cls.__qualname__}.{name}")

    def __call__(cls, *args, **kwargs):
        raise TorchvisionUnavailable(f"{cls.__qualname__} is part of torchvision, which medbench does not import "
                                     "(timm's data pipeline is not used; medbench feeds tensors in [0, 1]).")


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


def import_timm() -> types.ModuleType:
    """``import timm`` without importing torchvision (see the module docstring)."""
    if "timm" in sys.modules:
        return sys.modules["timm"]
    if "torchvision" in sys.modules:  # the user's own import: timm uses it as it is
        import timm

        return timm
    finder = _TorchvisionPlaceholders()
    sys.meta_path.insert(0, finder)
    try:
        try:
            import timm
        except ImportError as exc:
            raise MedbenchError(f"timm architectures need the timm package ({exc}); install it with "
                                "`pip install timm`.") from None
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            if isinstance(sys.modules[name], _PlaceholderModule):
                del sys.modules[name]
    return timm


# ----------------------------------------------------------------------------- names and kwargs

def is_timm(name: str) -> bool:
    return name.startswith(PREFIX)


def timm_models() -> list[str]:
    """Every model name timm can build (``timm.list_models()``), without the ``timm/`` prefix."""
    return list(import_timm().list_models())


def check_timm_name(name: str) -> str:
    """The timm model name in ``timm/<name>``; an error with close matches when timm has no such model."""
    model = name[len(PREFIX):]
    known = timm_models()
    if model not in known:
        close = difflib.get_close_matches(model, known, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(PREFIX + c for c in close)}?" if close else ""
        raise UnknownTimmModelError(
            f"Unknown timm architecture {name!r}: timm {import_timm().__version__} has no model {model!r}.{hint} "
            "List them with `python -c \"import timm; print(timm.list_models('resnet*'))\"`.")
    return model


def _ok(kind: type, value: Any) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, kind)


def timm_kwargs_problems(name: str, kwargs: dict, builder_args: tuple[str, ...]) -> list[str]:
    """Why ``kwargs`` are not acceptable for ``timm/<name>`` (allowlist, types, ranges); empty when they are."""
    problems = []
    for key, value in kwargs.items():
        where = f"architecture_kwargs.{key}"
        if key in builder_args:
            problems.append(f"{where} is set by medbench from the dataset and preprocessing; remove it")
        elif key in FORBIDDEN:
            problems.append(f"{where} is not accepted for {name}: {FORBIDDEN[key]}; remove it")
        elif key in LIST_KWARGS:
            kind, (lo, hi), max_len = LIST_KWARGS[key]
            if not isinstance(value, list) or not 1 <= len(value) <= max_len or not all(_ok(kind, v) for v in value):
                problems.append(f"{where} must be a list of 1 to {max_len} integers, got {str(value)[:60]!r}")
            elif not all(lo <= v <= hi for v in value):
                problems.append(f"{where} = {value} has items outside the range [{lo}, {hi}]")
        elif key in TIMM_KWARGS:
            kind, rng = TIMM_KWARGS[key]
            if not _ok(kind, value):
                problems.append(f"{where} must be {_KIND_WORDS[kind]}, got {type(value).__name__} {str(value)[:40]!r}")
            elif rng is not None and not rng[0] <= value <= rng[1]:
                problems.append(f"{where} = {value} is outside the range [{rng[0]}, {rng[1]}] accepted for timm models")
            elif key == "global_pool" and value not in GLOBAL_POOLS:
                problems.append(f"{where} must be one of {', '.join(map(repr, GLOBAL_POOLS))}, got {value!r}")
        else:
            close = difflib.get_close_matches(key, list(TIMM_KWARGS) + list(LIST_KWARGS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{where} is not an accepted timm argument{hint}; accepted: "
                            f"{', '.join(sorted(list(TIMM_KWARGS) + list(LIST_KWARGS)))}")
    img, patch = kwargs.get("img_size"), kwargs.get("patch_size")
    if not problems and isinstance(img, int) and isinstance(patch, int) and img % patch:
        problems.append(f"architecture_kwargs.img_size {img} must be a multiple of patch_size {patch} (the image is "
                        "cut into whole patches)")
    return problems


# ----------------------------------------------------------------------------- building

def create_timm(name: str, *, in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    """``timm.create_model`` for ``timm/<name>`` without pretrained weights (kwargs already checked).

    On the ``meta`` device (the parameter estimate) nothing is allocated; otherwise the parameter count
    is estimated first and a model above :data:`MAX_TIMM_PARAMETERS` is refused before it is built.
    """
    model = check_timm_name(name)
    timm = import_timm()
    if torch.empty(0).device.type != "meta":
        with torch.device("meta"):
            n = _create(timm, name, model, in_channels, num_classes, kwargs)
        count = sum(p.numel() for p in n.parameters())
        if count > MAX_TIMM_PARAMETERS:
            raise TimmBuildError(f"{name} with {kwargs or 'its defaults'} has {count:,} parameters, above medbench's "
                                 f"limit of {MAX_TIMM_PARAMETERS:,} for timm models; choose a smaller variant or "
                                 "smaller architecture_kwargs.")
    return _create(timm, name, model, in_channels, num_classes, kwargs)


class TimmBuildError(MedbenchError, ValueError):
    """timm refused the arguments (e.g. img_size not divisible by patch_size) or the model is too large."""


def _create(timm, name: str, model: str, in_channels: int, num_classes: int, kwargs: dict) -> nn.Module:
    try:
        return timm.create_model(model, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        msg = str(exc) or type(exc).__name__
        raise TimmBuildError(f"timm could not build {name} with architecture_kwargs {kwargs or '{}'}: "
                             f"{type(exc).__name__}: {msg[:300]}. Fix architecture_kwargs (timm's own argument "
                             "names for this model; e.g. img_size must be divisible by patch_size).") from None
