"""Checks on an ONNX graph before it is converted: allowed ops only, no control flow, no external data,
bounded size, the dataset's input and output shapes. Nothing in the file is executed here.

:func:`read_onnx` parses the file without following external-data paths; :func:`check_graph` lists
every problem of the graph in one :class:`OnnxGraphError` (each line names the node, initializer or
input and says how to fix it), then runs ``onnx.checker`` on a graph that passed, and returns a
:class:`GraphSummary`. The op allowlist keeps standard, deterministic ops with useful gradients:
rounding, sign, arg-max, top-k and random ops are left out (they mask gradients or randomise logits),
as are custom domains, local functions and subgraphs (``If``, ``Loop``, ``Scan``).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import MedbenchError

__all__ = ["ALLOWED_OPS", "CONTROL_FLOW_OPS", "EXPORT_OPSET", "MAX_INITIALIZER_BYTES", "MAX_ONNX_NODES",
           "GraphSummary", "OnnxGraphError", "OnnxLimits", "check_graph", "graph_parameter_count", "read_onnx"]

EXPORT_OPSET = 17  # the opset `medbench submission prepare` exports with (onnx2torch converts it)
MAX_ONNX_NODES = 10_000  # a ResNet-50 export has about 120 nodes, a ViT-B/16 about 2,500
MAX_INITIALIZER_BYTES = 256 * 1024 * 1024  # 64M float32 weights: CI evaluates the model on a CPU
STANDARD_DOMAINS = ("", "ai.onnx")
CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan", "SequenceMap"})
ALLOWED_OPS = frozenset({
    # layers
    "Conv", "ConvTranspose", "Gemm", "MatMul",
    "BatchNormalization", "InstanceNormalization", "LayerNormalization", "LRN",
    "MaxPool", "AveragePool", "GlobalAveragePool", "Dropout", "Identity",
    # activations
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
    "Softplus", "Softsign", "Erf", "Softmax", "LogSoftmax", "Clip",
    # arithmetic
    "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Sqrt", "Pow", "Exp", "Log", "Reciprocal", "Max", "Min", "Mean",
    "Sum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceL2",
    # shapes (a dynamic batch axis exports Shape/Gather/Unsqueeze/Concat before a Reshape)
    "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Gather", "Expand",
    "Tile", "Pad", "Resize", "DepthToSpace", "Shape", "Constant", "ConstantOfShape", "Cast", "Equal", "Where",
})


class OnnxGraphError(MedbenchError, ValueError):
    """An ONNX file that is not a graph medbench converts; the message lists every problem found."""


@dataclass(frozen=True)
class OnnxLimits:
    """Size limits of an accepted graph (the module constants by default)."""

    max_nodes: int = MAX_ONNX_NODES
    max_initializer_bytes: int = MAX_INITIALIZER_BYTES


@dataclass(frozen=True)
class GraphSummary:
    """What the checks measured: opset, node count, op histogram, weight bytes and parameter count."""

    opset: int
    n_nodes: int
    ops: dict[str, int]
    initializer_bytes: int
    num_parameters: int

    def describe(self) -> str:
        return (f"opset {self.opset}, {self.n_nodes} nodes ({len(self.ops)} op types), "
                f"{self.num_parameters} parameters, {self.initializer_bytes} bytes of initializers")


def read_onnx(path: str | os.PathLike) -> "onnx.ModelProto":  # noqa: F821
    """Parse an ``.onnx`` file without loading external data (a path in the file is never opened).

    Raises :class:`OnnxGraphError` for a file that is not an ONNX protobuf (pickles, HTML, truncated files).
    """
    import onnx
    from google.protobuf.message import DecodeError

    from .weights import PICKLE_MAGIC

    path = Path(path)
    with path.open("rb") as f:
        head = f.read(16)
    if head.startswith(PICKLE_MAGIC) or head.lstrip()[:1] == b"<":
        what = "an HTML page" if head.lstrip()[:1] == b"<" else "a pickle / torch.save file"
        raise OnnxGraphError(f"{path.name} is {what}, not an ONNX model. Fix: export the model with "
                             "`medbench submission prepare` (torch.onnx.export).")
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise OnnxGraphError(f"{path.name} is not a valid ONNX model ({type(exc).__name__}: {str(exc)[:200]}); "
                             "it may be truncated. Fix: export it again with `medbench submission prepare`.") from None
    if not proto.HasField("graph"):
        raise OnnxGraphError(f"{path.name} holds no ONNX graph. Fix: export the model with "
                             "`medbench submission prepare`.")
    return proto


def check_graph(proto, input_shape: tuple[int, ...], num_classes: int, *,
                limits: OnnxLimits = OnnxLimits()) -> GraphSummary:
    """Check ``proto`` against the allowlist, the limits and the dataset's shapes, then ``onnx.checker``.

    ``input_shape``: one image without the batch axis, ``(C, H, W)`` or ``(C, D, H, W)``.
    Returns the :class:`GraphSummary`; raises :class:`OnnxGraphError` listing every problem.
    """
    graph = proto.graph
    problems = _structure_problems(proto, limits)
    problems += _op_problems(graph)
    sizes, external = _initializer_sizes(graph)
    problems += external
    total = sum(sizes.values())
    if total > limits.max_initializer_bytes:
        biggest = ", ".join(f"{label} {size} bytes" for label, size in Counter(sizes).most_common(3))
        problems.append(f"initializers take {total} bytes, above the limit of {limits.max_initializer_bytes} "
                        f"(largest: {biggest}). Fix: submit a smaller model (CI evaluates it on a CPU).")
    problems += _input_problems(graph, input_shape) + _output_problems(graph, num_classes)
    if problems:
        raise OnnxGraphError(f"the ONNX graph is refused ({len(problems)} problem(s)):\n"
                             + "\n".join(f"  - {p}" for p in problems))
    _run_checker(proto)
    return GraphSummary(opset=_default_opset(proto), n_nodes=len(graph.node),
                        ops=dict(Counter(n.op_type for n in graph.node)), initializer_bytes=total,
                        num_parameters=graph_parameter_count(proto))


def graph_parameter_count(proto) -> int:
    """The number of floating-point initializer elements: the graph's weights (``weights.num_parameters``)."""
    from onnx import TensorProto

    floating = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
    return sum(_numel(t.dims) for t in proto.graph.initializer if t.data_type in floating)


# ----------------------------------------------------------------------------- individual checks

def _node_name(node, index: int) -> str:
    return f"node '{node.name}'" if node.name else f"node #{index}"


def _structure_problems(proto, limits: OnnxLimits) -> list[str]:
    problems = []
    n = len(proto.graph.node)
    if n > limits.max_nodes:
        problems.append(f"{n} nodes, above the limit of {limits.max_nodes}. Fix: submit a smaller model.")
    if proto.functions:
        names = ", ".join(f"{f.domain}::{f.name}" for f in proto.functions[:5])
        problems.append(f"the model defines local functions ({names}); only standard ONNX ops are accepted. "
                        "Fix: export without custom functions (torch.onnx.export with standard ops).")
    custom = [f"{o.domain} (version {o.version})" for o in proto.opset_import if o.domain not in STANDARD_DOMAINS]
    if custom:
        problems.append(f"the model imports custom opset domain(s) {', '.join(custom)}; only the standard ONNX "
                        "domain is accepted. Fix: export with standard ops only (no custom_opsets).")
    if _default_opset(proto) == 0:
        problems.append("the model imports no standard ONNX opset. Fix: export with torch.onnx.export "
                        f"(opset_version={EXPORT_OPSET}).")
    if proto.graph.sparse_initializer:
        problems.append("the graph has sparse initializers; only dense initializers are accepted. "
                        "Fix: export the dense weights.")
    return problems


def _op_problems(graph) -> list[str]:
    from onnx import AttributeProto

    custom, flow, unknown, subgraphs = [], [], [], []
    for i, node in enumerate(graph.node):
        where = f"{_node_name(node, i)} ({node.domain + '::' if node.domain else ''}{node.op_type})"
        if node.domain not in STANDARD_DOMAINS:
            custom.append(where)
        elif node.op_type in CONTROL_FLOW_OPS:
            flow.append(where)
        elif node.op_type not in ALLOWED_OPS:
            unknown.append(where)
        if node.op_type not in CONTROL_FLOW_OPS and any(
                a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for a in node.attribute):
            subgraphs.append(where)
    problems = []
    if custom:
        problems.append(f"custom-domain op(s), never run by medbench: {', '.join(custom)}. Fix: export with "
                        "standard ONNX ops only.")
    if flow:
        problems.append(f"control flow is refused: {', '.join(flow)}. Fix: export a model whose forward pass has "
                        "no data-dependent branches or loops (unrolled, traced with torch.onnx.export).")
    if subgraphs:
        problems.append(f"node(s) with subgraph attributes: {', '.join(subgraphs)}. Fix: export without subgraphs.")
    if unknown:
        problems.append(f"op(s) outside medbench's allowlist: {', '.join(unknown)}. Fix: replace them with allowed "
                        f"standard ops ({', '.join(sorted(ALLOWED_OPS))}); rounding, sign, arg-max and random ops "
                        "are refused because they mask gradients or randomise logits.")
    return problems


def _external_location(tensor) -> str | None:
    from onnx import TensorProto

    if tensor.data_location != TensorProto.EXTERNAL and not tensor.external_data:
        return None
    entries = {e.key: e.value for e in tensor.external_data}
    return entries.get("location", "(no location)")


def _initializer_sizes(graph) -> tuple[dict[str, int], list[str]]:
    """Declared bytes per initializer (and Constant node tensor); problems for external or odd tensors."""
    import onnx.helper

    tensors = [(f"initializer '{t.name}'", t) for t in graph.initializer]
    tensors += [(f"{_node_name(n, i)} (Constant)", a.t) for i, n in enumerate(graph.node)
                for a in n.attribute if n.op_type == "Constant" and a.name == "value"]
    sizes, problems = {}, []
    for label, tensor in tensors:
        location = _external_location(tensor)
        if location is not None:
            problems.append(f"{label} stores its data outside the file (external data, location {location!r}); "
                            "medbench never opens paths named in a model. Fix: save one self-contained .onnx "
                            "file (onnx.save_model(model, path, save_as_external_data=False)).")
            continue
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        except (KeyError, TypeError, ValueError):
            problems.append(f"{label} has tensor type {tensor.data_type}, which is not a numeric type. "
                            "Fix: store weights as float32.")
            continue
        sizes[label] = _numel(tensor.dims) * itemsize
    return sizes, problems


def _dims(value_info) -> list[int | str | None]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim]


def _input_problems(graph, input_shape: tuple[int, ...]) -> list[str]:
    from onnx import TensorProto

    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    want = ["N", *input_shape]
    fix = (f"Fix: export with one float input of shape {want} and a dynamic batch axis "
           "(dynamic_axes={'input': {0: 'batch'}}).")
    if len(inputs) != 1:
        return [f"the graph has {len(inputs)} inputs ({', '.join(i.name for i in inputs) or 'none'}); exactly one "
                f"image input is accepted. {fix}"]
    value = inputs[0]
    if value.type.tensor_type.elem_type != TensorProto.FLOAT:
        return [f"input '{value.name}' is not float32. {fix}"]
    dims = _dims(value)
    if len(dims) != len(want) or list(dims[1:]) != list(input_shape):
        return [f"input '{value.name}' has shape {dims}, but the dataset's images are {want}. {fix}"]
    if not isinstance(dims[0], str):
        return [f"input '{value.name}' has a fixed batch size {dims[0]}; the batch axis must be dynamic. {fix}"]
    return []


def _output_problems(graph, num_classes: int) -> list[str]:
    from onnx import TensorProto

    fix = f"Fix: return one float tensor of logits, shape [N, {num_classes}]."
    if len(graph.output) != 1:
        return [f"the graph has {len(graph.output)} outputs; exactly one (the logits) is accepted. {fix}"]
    value = graph.output[0]
    dims = _dims(value)
    if value.type.tensor_type.elem_type != TensorProto.FLOAT:
        return [f"output '{value.name}' is not float32. {fix}"]
    if len(dims) != 2 or dims[1] != num_classes:
        return [f"output '{value.name}' has shape {dims}; the dataset has {num_classes} classes. {fix}"]
    return []


def _run_checker(proto) -> None:
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OnnxGraphError(f"onnx.checker refuses the graph: {first[:300]}. Fix: export it again with "
                             f"torch.onnx.export (opset {EXPORT_OPSET}).") from None


def _default_opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in STANDARD_DOMAINS), 0)


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n
