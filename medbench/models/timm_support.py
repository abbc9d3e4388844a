"""``timm/<name>`` architectures: any timm model, built without pretrained weights, kwargs checked first.

An entry or submission may say ``architecture: timm/resnet18`` with ``architecture_kwargs``; the model is
``timm.create_model(name, pretrained=False, num_classes=..., in_chans=..., **kwargs)`` behind medbench's
``Normalize`` first layer (inputs in [0, 1]), and its weights come from the entry's safetensors file,
loaded strictly. Nothing is ever downloaded: ``pretrained`` is refused.

Keyword arguments are validated before anything is built by :class:`TimmKwargs` (an allowlist with
types and inclusive ranges); the parameter count is then estimated on the ``meta`` device and bounded
by :data:`MAX_TIMM_PARAMETERS`, so ``embed_dim: 100000`` is refused without allocating it.

Why the import shim: timm 1.x imports torchvision at import time, and not only in ``timm.data``:
``timm.layers.create_norm`` and ``timm.layers.norm_act`` import ``torchvision.ops.misc.FrozenBatchNorm2d``,
and every ``timm.models`` module imports ``timm.data`` (for its constants), whose ``__init__`` imports
``torchvision.transforms`` and ``torchvision.datasets``; building a model uses none of those names, so
timm is imported inside :func:`medbench.models.torchvision_shim.without_torchvision`.
"""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError
from torch import nn

from ..errors import MedbenchError
from .kwargs import ArchitectureKwargs
from .torchvision_shim import TorchvisionUnavailable, import_without_torchvision, without_torchvision  # noqa: F401  (re-exported)

PREFIX = "timm/"
MAX_TIMM_PARAMETERS = 50_000_000  # a CPU benchmark; medbench.submission.static caps submissions further

Fraction = Annotated[float, Field(ge=0.0, le=0.9)]
Multiplier = Annotated[float, Field(ge=0.05, le=4.0)]
Depth = Annotated[int, Field(ge=1, le=48)]
Width = Annotated[int, Field(ge=8, le=2048)]
Depths = Annotated[list[Depth], Field(min_length=1, max_length=8)]
Widths = Annotated[list[Width], Field(min_length=1, max_length=8)]


class TimmKwargs(ArchitectureKwargs):
    """The accepted ``architecture_kwargs`` of ``timm/<name>``: shape and regularisation settings of timm's
    families, with inclusive ranges. Anything else (pretrained, checkpoint_path, pretrained_cfg,
    features_only, norm/act layer objects...) is refused. A key left out keeps timm's default (the
    ``None`` defaults are never passed on: the entry's own kwargs are)."""

    img_size: Annotated[int, Field(ge=8, le=512)] = None
    patch_size: Annotated[int, Field(ge=1, le=64)] = None
    embed_dim: Width = None
    depth: Depth = None
    num_heads: Annotated[int, Field(ge=1, le=32)] = None
    mlp_ratio: Annotated[float, Field(ge=0.25, le=8.0)] = None
    qkv_bias: bool = None
    class_token: bool = None
    global_pool: Literal["", "avg", "max", "avgmax", "catavgmax", "token", "map"] = None
    drop_rate: Fraction = None
    drop_path_rate: Fraction = None
    attn_drop_rate: Fraction = None
    proj_drop_rate: Fraction = None
    width_multiplier: Multiplier = None
    channel_multiplier: Multiplier = None
    depth_multiplier: Multiplier = None
    output_stride: Annotated[int, Field(ge=8, le=32)] = None
    stem_width: Annotated[int, Field(ge=8, le=256)] = None
    base_width: Annotated[int, Field(ge=8, le=256)] = None
    cardinality: Annotated[int, Field(ge=1, le=64)] = None
    ls_init_value: Annotated[float, Field(ge=0.0, le=1.0)] = None
    depths: Depths = None
    dims: Widths = None
    embed_dims: Widths = None
    channels: Widths = None
    layers: Depths = None

    @model_validator(mode="after")
    def _whole_patches(self) -> "TimmKwargs":
        img, patch = self.img_size, self.patch_size
        if img is not None and patch is not None and img % patch:
            raise PydanticCustomError(
                "whole_patches", "architecture_kwargs.img_size {img} must be a multiple of patch_size {patch} "
                "(the image is cut into whole patches)", {"img": img, "patch": patch})
        return self


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


class UnknownTimmModelError(MedbenchError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# ----------------------------------------------------------------------------- importing timm

def import_timm() -> types.ModuleType:
    """``import timm`` without importing torchvision (see the module docstring)."""
    return import_without_torchvision("timm", "timm architectures need the timm package; install it with "
                                              "`pip install timm`")


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


def timm_refusal(name: str, key: str) -> str:
    """Why ``key`` is not accepted for ``timm/<name>``: a refused setting's reason, or a suggestion."""
    where = f"architecture_kwargs.{key}"
    if key in FORBIDDEN:
        return f"{where} is not accepted for {name}: {FORBIDDEN[key]}; remove it"
    accepted = sorted(TimmKwargs.model_fields)
    close = difflib.get_close_matches(key, accepted, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{where} is not an accepted timm argument{hint}; accepted: {', '.join(accepted)}"


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
