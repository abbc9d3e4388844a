"""ONNX graph -> ``nn.Module`` with onnx2torch (gradients flow for the attacks), checked against onnxruntime.

:func:`load_onnx_model` reads a file, runs :func:`~medbench.models.onnx_graph.check_graph` and only
then converts it; :func:`onnxruntime_difference` runs the same images through the converted module
and through onnxruntime (``CPUExecutionProvider``) and returns the largest absolute difference of the
logits, which :func:`check_parity` bounds by :data:`PARITY_ATOL`.
"""

from __future__ import annotations

import os
import types
from pathlib import Path

import torch
from torch import nn

from ..errors import MedbenchError
from .onnx_graph import GraphSummary, OnnxLimits, check_graph, read_onnx
from .torchvision_shim import import_without_torchvision

__all__ = ["PARITY_ATOL", "PARITY_IMAGES", "OnnxConversionError", "OnnxParityError", "check_parity", "convert_onnx",
           "import_onnx2torch", "load_onnx_model", "onnxruntime_difference"]

PARITY_ATOL = 1e-4  # largest accepted |converted - onnxruntime| on any logit
PARITY_IMAGES = 64  # test images compared (the first ones of the split)


class OnnxConversionError(MedbenchError, ValueError):
    """onnx2torch could not convert a graph that passed the checks."""


class OnnxParityError(MedbenchError, ValueError):
    """The converted module's logits differ from onnxruntime's by more than the tolerance."""


def import_onnx2torch() -> types.ModuleType:
    """``import onnx2torch`` without importing torchvision (its NMS and RoiAlign converters need it)."""
    return import_without_torchvision("onnx2torch", "ONNX models need onnx2torch; install medbench again "
                                                    "(`pip install -e .`)")


def convert_onnx(proto) -> nn.Module:
    """The checked graph ``proto`` as an ``nn.Module`` (a torch.fx GraphModule) in eval mode, on the CPU."""
    onnx2torch = import_onnx2torch()
    try:
        module = onnx2torch.convert(proto)
    except Exception as exc:  # noqa: BLE001 - NotImplementedError for an op version, KeyError, ...
        raise OnnxConversionError(f"onnx2torch could not convert the graph: {type(exc).__name__}: "
                                  f"{str(exc)[:300]}. Fix: export with torch.onnx.export at opset 17 "
                                  "(`medbench submission prepare`).") from None
    return module.eval()


def load_onnx_model(path: str | os.PathLike, input_shape: tuple[int, ...], num_classes: int, *,
                    limits: OnnxLimits = OnnxLimits()) -> tuple[nn.Module, GraphSummary]:
    """Read, check (before converting) and convert one ``.onnx`` file; the module and the graph's summary.

    Raises :class:`~medbench.models.onnx_graph.OnnxGraphError` or :class:`OnnxConversionError`.
    """
    proto = read_onnx(path)
    summary = check_graph(proto, input_shape, num_classes, limits=limits)
    return convert_onnx(proto), summary


def onnxruntime_difference(module: nn.Module, path: str | os.PathLike, images: torch.Tensor) -> float:
    """The largest absolute difference between ``module``'s logits and onnxruntime's on ``images``."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = onnxruntime.InferenceSession(Path(path).read_bytes(), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = images.detach().float().cpu().contiguous()
    (expected,) = session.run(None, {name: x.numpy()})
    with torch.no_grad():
        got = module.cpu()(x)
    return float((got - torch.from_numpy(expected)).abs().max())


def check_parity(module: nn.Module, path: str | os.PathLike, images: torch.Tensor, *,
                 atol: float = PARITY_ATOL) -> float:
    """:func:`onnxruntime_difference`, raising :class:`OnnxParityError` above ``atol``; returns it."""
    diff = onnxruntime_difference(module, path, images)
    if not diff <= atol:  # NaN fails too
        raise OnnxParityError(f"the converted model's logits differ from onnxruntime's by up to {diff:.3g} on "
                              f"{len(images)} test images (tolerance {atol:g}). Fix: export with "
                              "`medbench submission prepare`; report the graph to the maintainers if it persists.")
    return diff
