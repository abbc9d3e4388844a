"""``prepare_onnx_submission``: the author's own ``nn.Module`` -> a folder ready to check and upload.

Runs on the author's machine, with the author's code: ``module:factory`` is imported and called to get
the model (inputs in [0, 1], logits out). The model is exported with ``torch.onnx.export`` (opset
:data:`~medbench.models.onnx_graph.EXPORT_OPSET`, dynamic batch axis), and the written file goes
through the same checks CI runs (graph checks, onnx2torch conversion, onnxruntime comparison). The
folder then holds ``<id>.onnx``, ``<id>.sha256``, ``probe.json`` (shapes and measurements) and
``<id>.yaml``, a submission whose weights source is the bundled file:
``medbench submission validate <out>/<id>.yaml --local`` checks it before anything is uploaded.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import yaml
from torch import nn

from ..data import get_spec, load_dataset
from ..errors import MedbenchError
from ..models.onnx_convert import PARITY_ATOL, PARITY_IMAGES, check_parity, convert_onnx
from ..models.onnx_graph import EXPORT_OPSET, check_graph, read_onnx
from ..models.weights import sha256sum
from ..schema.entry import ONNX_ARCHITECTURE, PAPER_ID_RE

__all__ = ["PrepareError", "Prepared", "export_onnx", "load_factory", "prepare_onnx_submission"]

INPUT_NAME, OUTPUT_NAME = "input", "logits"


class PrepareError(MedbenchError, ValueError):
    """The module, its factory or its export cannot make a valid ONNX submission; the message says why."""


@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` wrote and measured."""

    onnx_path: str
    yaml_path: str
    probe_path: str
    sha256: str
    size_bytes: int
    num_parameters: int
    input_shape: list
    output_shape: list
    opset: int
    ops: dict
    max_abs_difference: float
    parity_images: str


def load_factory(spec: str) -> Callable[[], nn.Module]:
    """``package.module:factory`` -> the callable (the current folder is importable, like ``python -m``)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr.isidentifier():
        raise PrepareError(f"{spec!r} is not MODULE:FACTORY. Fix: name a module and a function that returns your "
                           "model, e.g. mymodels.net:build (mymodels/net.py, def build() -> nn.Module).")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PrepareError(f"cannot import {module_name!r} ({exc}). Fix: run from the folder that holds it, or "
                           "install your package (PYTHONPATH works too).") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise PrepareError(f"{module_name} has no function {attr!r}. Fix: give the name of a function that returns "
                           "the trained model (load your weights inside it).")
    return factory


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path, *, opset: int = EXPORT_OPSET) -> None:
    """``torch.onnx.export`` with one input and one output (``input``/``logits``) and a dynamic batch axis."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer hints
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset, do_constant_folding=True,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})


def prepare_onnx_submission(factory: str | Callable[[], nn.Module], dataset: str, out: str | Path, *, model_id: str,
                            size: int = 28, license: str = "Apache-2.0", mean: list[float] | None = None,
                            std: list[float] | None = None, data_root: str | Path | None = None) -> Prepared:
    """Export the model ``factory()`` returns, check the file like CI does, and write the submission folder.

    ``mean``/``std``: only recorded in the YAML's ``preprocessing`` (the module applies its own normalisation).
    Raises :class:`PrepareError` (module or export), or the graph/conversion/parity error of the checks.
    """
    if not re.fullmatch(PAPER_ID_RE, model_id):
        raise PrepareError(f"--id {model_id!r} is not Author2026Keyword (first author, year, keyword), "
                           "e.g. Smith2026Onnx.")
    spec = get_spec(dataset)
    spec.check_size(size)
    model = _build(factory)
    images, source = _probe_images(dataset, size, data_root)
    out_shape = _probe(model, images[:2], spec.num_classes)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / f"{model_id}.onnx"
    try:
        export_onnx(model, images[:2], onnx_path)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types; the author needs the reason
        raise PrepareError(f"torch.onnx.export failed: {type(exc).__name__}: {str(exc)[:500]}. Fix: make forward "
                           "traceable (no data-dependent Python branches, tensors only).") from None
    proto = read_onnx(onnx_path)
    summary = check_graph(proto, spec.input_shape(size), spec.num_classes)
    diff = check_parity(convert_onnx(proto), onnx_path, images, atol=PARITY_ATOL)
    sha = sha256sum(onnx_path)
    (folder / f"{model_id}.sha256").write_text(f"{sha}  {onnx_path.name}\n", encoding="utf-8")
    prepared = Prepared(onnx_path=str(onnx_path), yaml_path=str(folder / f"{model_id}.yaml"),
                        probe_path=str(folder / "probe.json"), sha256=sha, size_bytes=onnx_path.stat().st_size,
                        num_parameters=summary.num_parameters, input_shape=["N", *spec.input_shape(size)],
                        output_shape=["N", out_shape[1]], opset=summary.opset, ops=summary.ops,
                        max_abs_difference=diff, parity_images=source)
    Path(prepared.probe_path).write_text(json.dumps(asdict(prepared), indent=2) + "\n", encoding="utf-8")
    Path(prepared.yaml_path).write_text(_submission_yaml(prepared, model_id, dataset, size, license, mean, std),
                                        encoding="utf-8")
    return prepared


def _build(factory: str | Callable[[], nn.Module]) -> nn.Module:
    fn = load_factory(factory) if isinstance(factory, str) else factory
    model = fn()
    if not isinstance(model, nn.Module):
        raise PrepareError(f"the factory returned {type(model).__name__}, not a torch.nn.Module. Fix: return the "
                           "model itself (inputs in [0, 1], logits out).")
    return model.cpu().eval()


def _probe_images(dataset: str, size: int, data_root) -> tuple[torch.Tensor, str]:
    """The first test images in [0, 1] (what CI compares on), or uniform noise when the data is absent."""
    try:
        images = load_dataset(dataset, "test", size, root=data_root).images[:PARITY_IMAGES]
        return images.float().div(255.0), f"first {len(images)} {dataset} test images"
    except MedbenchError:
        generator = torch.Generator().manual_seed(0)
        shape = (PARITY_IMAGES, *get_spec(dataset).input_shape(size))
        return torch.rand(shape, generator=generator), f"{PARITY_IMAGES} uniform-noise images (test split absent)"


def _probe(model: nn.Module, x: torch.Tensor, num_classes: int) -> tuple[int, ...]:
    try:
        with torch.no_grad():
            y = model(x)
    except Exception as exc:  # noqa: BLE001 - the author's own module
        raise PrepareError(f"the model raised {type(exc).__name__} on a batch of shape {list(x.shape)}: "
                           f"{str(exc)[:300]}. Fix: it must take float images in [0, 1] of that shape.") from None
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != (x.shape[0], num_classes):
        got = list(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise PrepareError(f"the model returned {got} for a batch of {x.shape[0]}; expected logits of shape "
                           f"[{x.shape[0]}, {num_classes}]. Fix: return one tensor of logits, one per class.")
    return tuple(y.shape)


def _submission_yaml(p: Prepared, model_id: str, dataset: str, size: int, license: str,
                     mean: list[float] | None, std: list[float] | None) -> str:
    spec = get_spec(dataset)
    entry = {
        "id": model_id, "dataset": dataset, "size": size, "task": spec.task,
        "architecture": ONNX_ARCHITECTURE, "architecture_kwargs": {},
        "preprocessing": {"mean": mean or [0.0], "std": std or [1.0]},
        "recipe": {"method": "erm", "epochs": 1, "optimizer": "adam", "lr": 0.001, "batch_size": 64, "seed": 0,
                   "extra_data": False},
        "paper": {"title": "TODO title", "url": "https://arxiv.org/abs/0000.00000", "authors": ["TODO Author"],
                  "venue": "TODO", "year": dt.date.today().year},
        "license": license, "date_added": dt.date.today().isoformat(),
        "description": f"TODO: describe the model (exported to ONNX opset {p.opset} by medbench submission prepare).",
        "tags": ["onnx"],
        "weights": {"format": "onnx", "sha256": p.sha256, "size_bytes": p.size_bytes,
                    "num_parameters": p.num_parameters,
                    "sources": [{"kind": "bundled", "filename": Path(p.onnx_path).name}]},
        "claimed": {"clean_balanced_accuracy": 0.5, "clean_accuracy": 0.5},
    }
    header = (f"# Written by `medbench submission prepare`: weights (sha256, size, parameters) are measured.\n"
              f"# TODO before the pull request: recipe, paper, description, preprocessing (the normalisation your\n"
              f"# module applies inside the graph; not checked) and claimed (measure them with medbench).\n"
              f"# Check this folder: medbench submission validate {model_id}.yaml --local\n"
              f"# Then upload {model_id}.onnx to the Hugging Face Hub and replace the bundled source by\n"
              f"#   {{kind: hub, repo_id: <owner/name>, filename: <path>, revision: \"<40-hex commit>\"}}\n"
              f"# and copy the file to submissions/{model_id}.yaml.\n")
    return header + yaml.safe_dump(entry, sort_keys=False, allow_unicode=True)
