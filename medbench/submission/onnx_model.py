"""ONNX submissions: fetch the pinned ``.onnx`` file, check the graph before converting, convert with
onnx2torch, and compare the converted model's logits with onnxruntime's on real test images."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..data import get_spec, load_dataset
from ..errors import MedbenchError
from ..models.onnx_convert import PARITY_ATOL, PARITY_IMAGES, OnnxConversionError, convert_onnx, onnxruntime_difference
from ..models.onnx_graph import OnnxGraphError, check_graph, read_onnx
from ..schema.entry import ModelEntry
from .report import Report

EXPORT_FIX = ("Export the model with `medbench submission prepare` (torch.onnx.export, standard ops, one "
              "self-contained file) and run `medbench submission validate <yaml> --local` on its output folder.")


def load_checked_onnx(report: Report, entry: ModelEntry, *, folder: Path | None = None,
                      data_root: str | Path | None = None) -> nn.Module | None:
    """Fetch, verify, check, convert and compare ``entry``'s ONNX graph, recording each step in ``report``.

    ``folder``: where a bundled (local) file lives (``--local`` runs only). Returns the model (eval mode) or None.
    """
    from .model import fetch_reported
    from .static import MAX_PARAMETERS

    path = fetch_reported(report, entry, folder)
    if path is None:
        return None
    spec = get_spec(entry.dataset)
    try:
        proto = read_onnx(path)
        summary = check_graph(proto, spec.input_shape(entry.size), spec.num_classes)
    except OnnxGraphError as exc:
        report.add("model", "onnx graph", False, str(exc).replace(str(path), "the .onnx file"), fix=EXPORT_FIX)
        return None
    report.add("model", "onnx graph", True, f"{summary.describe()}; standard ops only, no control flow, "
               "no external data; onnx.checker passes")
    n, declared = summary.num_parameters, entry.weights.num_parameters
    too_big = n > MAX_PARAMETERS
    report.add("model", "parameter count", n == declared and not too_big,
               f"the graph has {n} parameters (floating-point initializer elements); the entry says {declared}"
               + (f"; above the limit of {MAX_PARAMETERS}" if too_big else ""),
               fix="Set weights.num_parameters to the number `medbench submission prepare` wrote.")
    if n != declared or too_big:
        return None
    try:
        model = convert_onnx(proto)
    except OnnxConversionError as exc:
        report.add("model", "onnx conversion", False, str(exc), fix=EXPORT_FIX)
        return None
    report.add("model", "onnx conversion", True, "onnx2torch converted the graph (a torch.fx GraphModule)")
    report.skip("model", "preprocessing", f"not checked: normalisation is inside the ONNX graph (declared mean "
                f"{entry.preprocessing.mean}, std {entry.preprocessing.std})")
    _check_parity(report, model, path, entry, data_root)
    return None if report.stage_failed("model") else model


def _check_parity(report: Report, model: nn.Module, path: Path, entry: ModelEntry, data_root) -> None:
    try:
        images = load_dataset(entry.dataset, "test", entry.size, root=data_root).images[:PARITY_IMAGES]
    except MedbenchError as exc:
        report.add("model", "matches onnxruntime", False, f"could not run: {exc}",
                   fix="Make the MedMNIST test split available (MEDBENCH_DATA or --data-root).")
        return
    x = images.float().div(255.0)
    try:
        diff = onnxruntime_difference(model, path, x)
    except Exception as exc:  # noqa: BLE001 - the converted graph or onnxruntime may raise anything
        report.add("model", "matches onnxruntime", False, f"running the graph failed: {type(exc).__name__}: "
                   f"{str(exc)[:300]}", fix=EXPORT_FIX)
        return
    report.add("model", "matches onnxruntime", diff <= PARITY_ATOL,
               f"largest |converted - onnxruntime| logit difference {diff:.3g} on {len(x)} test images "
               f"(tolerance {PARITY_ATOL:g})", fix=EXPORT_FIX, measured=diff)
