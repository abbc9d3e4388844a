"""Model builders registered by name (timm-style ``@register_architecture``).

Every builder takes ``in_channels``, ``num_classes``, ``mean`` and ``std`` (the normalisation
constants, one value or one per channel) plus its own keyword arguments, and returns a module that
takes inputs in [0, 1] and returns logits: normalisation is the model's first layer, so attacks
and corruptions work in pixel space.
"""

from __future__ import annotations

import difflib
import inspect
import math
from typing import Callable, Sequence

import torch
from torch import nn

from ..errors import MedbenchError
from .kwargs import ArchitectureKwargs, Range, builder_kwargs_model, kwargs_problems
from .timm_support import TimmBuildError, TimmKwargs, UnknownTimmModelError, create_timm, is_timm, timm_refusal

Builder = Callable[..., nn.Module]
_REGISTRY: dict[str, Builder] = {}
_KWARGS_MODELS: dict[str, type[ArchitectureKwargs]] = {}
BUILDER_ARGS = ("in_channels", "num_classes", "mean", "std")  # set by medbench from the dataset and entry


class UnknownArchitectureError(MedbenchError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ArchitectureKwargsError(MedbenchError, ValueError):
    """Keyword arguments a builder does not take, of the wrong type, or outside its declared ranges."""


def register_architecture(name: str | None = None, *, ranges: dict[str, Range] | None = None):
    """Decorator registering a builder under ``name`` (default: the function's name).

    ``ranges`` bounds numeric keyword arguments (inclusive), e.g. ``{"width": (1, 512)}``: entries and
    submissions choose them, and a width of 10^9 must be refused before anything is allocated. The
    builder's signature and ranges make its kwargs model (:func:`architecture_kwargs_model`).
    """

    def wrap(fn: Builder) -> Builder:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"Architecture {key!r} is registered twice.")
        if key == "onnx":  # medbench.schema.entry.ONNX_ARCHITECTURE: entries whose weights file is the graph
            raise ValueError("the architecture name 'onnx' is reserved for ONNX graphs (weights.format: onnx).")
        params = _builder_params(fn)
        unknown = set(ranges or {}) - set(params)
        if unknown:
            raise ValueError(f"ranges for {key!r} name arguments the builder does not take: {sorted(unknown)}")
        _KWARGS_MODELS[key] = builder_kwargs_model(key, params, dict(ranges or {}))
        _REGISTRY[key] = fn
        return fn

    return wrap


def _builder_params(fn: Builder) -> dict[str, inspect.Parameter]:
    return {p.name: p for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in BUILDER_ARGS}


def architecture_kwargs_model(name: str) -> type[ArchitectureKwargs]:
    """The pydantic model of ``name``'s keyword arguments (``timm/<name>``: :class:`TimmKwargs`).

    Raises :class:`UnknownArchitectureError` for a name that is neither registered nor ``timm/``.
    """
    if is_timm(name):
        return TimmKwargs
    if name not in _KWARGS_MODELS:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownArchitectureError(
            f"Unknown architecture {name!r}.{hint} Registered: {', '.join(list_architectures())}, and any timm "
            "model as timm/<name>. Register a new one with @medbench.models.register_architecture."
        )
    return _KWARGS_MODELS[name]


def architecture_kwargs_problems(name: str, kwargs: dict) -> list[str]:
    """Why ``kwargs`` do not validate against ``name``'s kwargs model, one sentence per problem naming
    the key; empty when they do. Raises :class:`UnknownArchitectureError` for an unknown ``name``."""
    model = architecture_kwargs_model(name)

    def unknown(key: str) -> str:
        if key in BUILDER_ARGS:
            return f"architecture_kwargs.{key} is set by medbench from the dataset and preprocessing; remove it"
        if is_timm(name):
            return timm_refusal(name, key)
        accepted = list(model.model_fields)
        close = difflib.get_close_matches(key, accepted, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return (f"architecture_kwargs.{key} is not an argument of {name} "
                f"(its arguments: {', '.join(accepted) or 'none'}){hint}")

    note = " accepted for timm models" if is_timm(name) else f" of {name}"
    return kwargs_problems(model, kwargs, unknown=unknown, range_note=note)


def check_architecture_kwargs(name: str, kwargs: dict) -> None:
    """Raise :class:`ArchitectureKwargsError` listing every problem of ``kwargs`` for ``name``."""
    problems = architecture_kwargs_problems(name, kwargs)
    if problems:
        raise ArchitectureKwargsError("; ".join(problems))


def estimate_parameters(name: str, *, in_channels: int, num_classes: int, mean=0.5, std=0.5, **kwargs) -> int:
    """The parameter count of the built architecture, from a build on the ``meta`` device (nothing allocated)."""
    with torch.device("meta"):
        model = build_architecture(name, in_channels=in_channels, num_classes=num_classes, mean=mean, std=std,
                                   **kwargs)
    return count_parameters(model)


def list_architectures() -> list[str]:
    """The registered builders (any timm model is also available as ``timm/<name>``)."""
    return sorted(_REGISTRY)


def build_architecture(
    name: str,
    *,
    in_channels: int,
    num_classes: int,
    mean: float | Sequence[float] = 0.5,
    std: float | Sequence[float] = 0.5,
    **kwargs,
) -> nn.Module:
    """Build a registered architecture (or ``timm/<name>``) with normalisation inside the model.

    Raises :class:`UnknownArchitectureError` for an unknown name and :class:`ArchitectureKwargsError`
    for kwargs its model refuses (before anything is built).
    """
    check_architecture_kwargs(name, kwargs)
    if is_timm(name):
        try:
            net = create_timm(name, in_channels=in_channels, num_classes=num_classes, **kwargs)
        except UnknownTimmModelError as exc:
            raise UnknownArchitectureError(str(exc)) from None
        except TimmBuildError as exc:
            raise ArchitectureKwargsError(str(exc)) from None
        return Classifier(Normalize(mean, std, in_channels), net)
    return _REGISTRY[name](in_channels=in_channels, num_classes=num_classes, mean=mean, std=std, **kwargs)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, for 2D (N,C,H,W) and 3D (N,C,D,H,W) inputs; constants are buffers."""

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float], channels: int, dims: int = 2):
        super().__init__()
        shape = (1, channels) + (1,) * dims
        # checked on the Python values: the module may be built on the meta device (no data to compare)
        if not all(math.isfinite(v) for v in _floats(mean)) or not all(0 < v < math.inf for v in _floats(std)):
            raise ValueError(f"mean must be finite and std positive, got mean {mean}, std {std}")
        m = torch.as_tensor(mean, dtype=torch.float32).expand(channels).reshape(shape).clone()
        s = torch.as_tensor(std, dtype=torch.float32).expand(channels).reshape(shape).clone()
        self.register_buffer("mean", m)
        self.register_buffer("std", s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _floats(v: float | Sequence[float]) -> list[float]:
    return [float(x) for x in (v if isinstance(v, (list, tuple)) else [v])]


class Classifier(nn.Module):
    """``Normalize`` followed by a network: the contract every zoo model satisfies."""

    def __init__(self, normalize: Normalize, net: nn.Module):
        super().__init__()
        self.normalize = normalize
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


# ----------------------------------------------------------------------------- ResNets (2D and 3D)

def _conv(dims: int):
    return nn.Conv3d if dims == 3 else nn.Conv2d


def _bn(dims: int):
    return nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dims: int):
        super().__init__()
        Conv, BN = _conv(dims), _bn(dims)
        self.conv1 = Conv(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = BN(cout)
        self.conv2 = Conv(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = BN(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(Conv(cin, cout, 1, stride, bias=False), BN(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet (3x3 stem, no max-pool), as in MedMNIST's 28-px baselines; 2D or 3D."""

    def __init__(self, in_channels: int, num_classes: int, blocks: Sequence[int], widths: Sequence[int], dims: int = 2):
        super().__init__()
        Conv, BN = _conv(dims), _bn(dims)
        self.stem = nn.Sequential(Conv(in_channels, widths[0], 3, 1, 1, bias=False), BN(widths[0]), nn.ReLU())
        layers, cin = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1, dims))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d(1) if dims == 3 else nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


@register_architecture("resnet18")
def resnet18(*, in_channels, num_classes, mean, std) -> nn.Module:
    """ResNet-18 with a 28-px (CIFAR-style) stem, the MedMNIST v2 baseline (11.2M parameters)."""
    net = ResNet(in_channels, num_classes, [2, 2, 2, 2], [64, 128, 256, 512])
    return Classifier(Normalize(mean, std, in_channels), net)


@register_architecture("resnet8", ranges={"width": (1, 256)})
def resnet8(*, in_channels, num_classes, mean, std, width: int = 16) -> nn.Module:
    """A small ResNet (3 stages of one block, widths w, 2w, 4w) that trains in seconds per epoch on a CPU."""
    net = ResNet(in_channels, num_classes, [1, 1, 1], [width, 2 * width, 4 * width])
    return Classifier(Normalize(mean, std, in_channels), net)


@register_architecture("resnet18_3d", ranges={"width": (1, 128)})
def resnet18_3d(*, in_channels, num_classes, mean, std, width: int = 64) -> nn.Module:
    """3D ResNet-18 (3x3x3 convolutions), the MedMNIST v2 3D baseline at ``width=64``."""
    net = ResNet(in_channels, num_classes, [2, 2, 2, 2], [width, 2 * width, 4 * width, 8 * width], dims=3)
    return Classifier(Normalize(mean, std, in_channels, dims=3), net)


@register_architecture("resnet8_3d", ranges={"width": (1, 256)})
def resnet8_3d(*, in_channels, num_classes, mean, std, width: int = 8) -> nn.Module:
    """A small 3D ResNet (3 stages of one block) for CPU training on 28^3 volumes."""
    net = ResNet(in_channels, num_classes, [1, 1, 1], [width, 2 * width, 4 * width], dims=3)
    return Classifier(Normalize(mean, std, in_channels, dims=3), net)


# ----------------------------------------------------------------------------- WideResNet

class WideBlock(nn.Module):
    """Pre-activation wide block (Zagoruyko & Komodakis), as used in robust-training papers."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = None if (cin == cout and stride == 1) else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        o = torch.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(self.dropout(torch.relu(self.bn2(y))))
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, depth: int, widen: int, dropout: float = 0.0):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks, cin = [], widths[0]
        for stage, w in enumerate(widths[1:]):
            for j in range(n):
                blocks.append(WideBlock(cin, w, 2 if (j == 0 and stage > 0) else 1, dropout))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        out = torch.relu(self.bn(self.blocks(self.stem(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


@register_architecture("wideresnet16", ranges={"widen": (1, 16), "dropout": (0.0, 0.9)})
def wideresnet16(*, in_channels, num_classes, mean, std, widen: int = 4, dropout: float = 0.0) -> nn.Module:
    """WideResNet-16-k (k = ``widen``), the family used by TRADES-style robust training."""
    return Classifier(Normalize(mean, std, in_channels), WideResNet(in_channels, num_classes, 16, widen, dropout))


@register_architecture("smallcnn", ranges={"width": (1, 512), "dims": (2, 3)})
def smallcnn(*, in_channels, num_classes, mean, std, width: int = 16, dims: int = 2) -> nn.Module:
    """A 3-layer CNN (conv-BN-ReLU x3, global pooling); 2D or 3D (``dims``). For tests and tiny baselines."""
    Conv, BN = _conv(dims), _bn(dims)
    pool = nn.AdaptiveAvgPool3d(1) if dims == 3 else nn.AdaptiveAvgPool2d(1)
    net = nn.Sequential(
        Conv(in_channels, width, 3, 1, 1, bias=False), BN(width), nn.ReLU(),
        Conv(width, 2 * width, 3, 2, 1, bias=False), BN(2 * width), nn.ReLU(),
        Conv(2 * width, 4 * width, 3, 2, 1, bias=False), BN(4 * width), nn.ReLU(),
        pool, nn.Flatten(), nn.Linear(4 * width, num_classes),
    )
    return Classifier(Normalize(mean, std, in_channels, dims=dims), net)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
