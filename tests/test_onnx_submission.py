"""Any architecture as an ONNX graph: `medbench submission prepare` exports a custom CNN, the local folder
validates, the converted model matches onnxruntime on real BreastMNIST and gradients flow; hostile graphs
(custom ops, huge initializers, external data, control flow) are refused, each with its reason, before
anything is converted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml
from onnx import TensorProto, helper
from torch import nn

from conftest import REPO, need_real
from medbench.cli import main as cli_main
from medbench.data import load_dataset
from medbench.models.onnx_convert import PARITY_ATOL, onnxruntime_difference
from medbench.models.onnx_graph import ALLOWED_OPS, MAX_INITIALIZER_BYTES, OnnxGraphError, OnnxLimits, check_graph, read_onnx
from medbench.models.weights import save_weights, sha256sum
from medbench.submission import ReproduceSettings, validate_submission
from medbench.zoo.loader import load_entry_model

DATASET = "breastmnist"
MODEL_ID = "Test2026Onnx"
SETTINGS = ReproduceSettings(subset_size=32, n_iter=5, square_queries=20)


# ----------------------------------------------------------------------------- the submitted model

class QuickGelu(nn.Module):
    """x * sigmoid(1.702 x): an activation no registered medbench architecture uses."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = QuickGelu()

    def forward(self, x):
        return x + self.conv2(self.act(self.norm(self.conv1(x))))


class TinyResNet(nn.Module):
    """Normalisation inside, a residual block, HardSwish and QuickGelu; inputs in [0, 1], logits out."""

    def __init__(self, width: int = 8, num_classes: int = 2):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.block = Residual(width)
        self.act = nn.Hardswish()
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        h = self.act(self.block(self.stem((x - 0.5) / 0.25)))
        return self.head(nn.functional.adaptive_avg_pool2d(h, 1).flatten(1))


@pytest.fixture(scope="module")
def trained(real_root) -> TinyResNet:
    need_real(real_root, f"{DATASET}.npz")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = load_dataset(DATASET, "train", root=real_root).as_float()
    model = TinyResNet()
    weight = len(y) / (2 * torch.bincount(y.flatten(), minlength=2).float())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(10):  # about 5 s on one core
        model.train()
        for idx in torch.randperm(len(y)).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx].flatten(), weight=weight).backward()
            opt.step()
    return model.eval()


@pytest.fixture
def registry(tmp_path) -> Path:
    root = tmp_path / "model_zoo"
    (root / DATASET).mkdir(parents=True)
    for name in ("Baseline_SmallCNN_ERM.yaml", "Baseline_SmallCNN_ERM.safetensors"):
        shutil.copy(REPO / "model_zoo" / DATASET / name, root / DATASET / name)
    return root


@pytest.fixture
def prepared(trained, tmp_path, real_root, monkeypatch) -> Path:
    """`medbench submission prepare factory:build ...` run from the author's folder; the output folder."""
    weights = tmp_path / "author" / "net.safetensors"
    save_weights(trained, weights)
    (tmp_path / "author" / "onnx_test_factory.py").write_text(
        "from medbench.models.weights import load_weights\n"
        "from test_onnx_submission import TinyResNet\n\n"
        f"def build():\n    return load_weights(TinyResNet(), {str(weights)!r})\n")
    monkeypatch.chdir(tmp_path / "author")
    monkeypatch.syspath_prepend(str(tmp_path / "author"))
    out = tmp_path / "out"
    rc = cli_main(["submission", "prepare", "onnx_test_factory:build", "--dataset", DATASET, "--id", MODEL_ID,
                   "--out", str(out), "--mean", "0.5", "--std", "0.25", "--data-root", str(real_root)])
    assert rc == 0
    return out


# ----------------------------------------------------------------------------- the good path

def test_prepare_writes_a_pinned_graph_a_probe_and_a_valid_yaml(prepared, trained):
    onnx_file = prepared / f"{MODEL_ID}.onnx"
    sha = sha256sum(onnx_file)
    assert (prepared / f"{MODEL_ID}.sha256").read_text().split()[0] == sha
    probe = json.loads((prepared / "probe.json").read_text())
    assert probe["input_shape"] == ["N", 1, 28, 28] and probe["output_shape"] == ["N", 2]
    assert probe["max_abs_difference"] <= PARITY_ATOL and "test images" in probe["parity_images"]
    data = yaml.safe_load((prepared / f"{MODEL_ID}.yaml").read_text())
    assert data["architecture"] == "onnx" and data["weights"]["format"] == "onnx"
    assert data["weights"]["sha256"] == sha and data["weights"]["size_bytes"] == onnx_file.stat().st_size
    assert data["weights"]["sources"] == [{"kind": "bundled", "filename": f"{MODEL_ID}.onnx"}]
    assert data["preprocessing"] == {"mean": [0.5], "std": [0.25]}
    # the graph's batch axis is dynamic; the residual Add, HardSwish and x * sigmoid(1.702 x) are standard ops
    proto = read_onnx(onnx_file)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert {"Conv", "Add", "HardSwish", "Sigmoid", "Mul"} <= set(probe["ops"]) <= ALLOWED_OPS


def test_local_folder_validates_and_ci_mode_refuses_the_bundled_file(prepared, registry, real_root):
    path = prepared / f"{MODEL_ID}.yaml"
    report = validate_submission(path, registry=registry, data_root=real_root, settings=SETTINGS, local=True)
    assert report.passed, report.to_text()
    passed = {c.name: c for c in report.checks if c.status == "pass"}
    assert {"onnx graph", "parameter count", "onnx conversion", "matches onnxruntime", "outputs_are_logits",
            "nonzero_input_gradients", "deterministic_forward", "batch_independent", "buffers_unchanged",
            "no_autograd_in_forward", "finite_off_grid"} <= set(passed)
    assert passed["matches onnxruntime"].measured <= PARITY_ATOL
    ci = validate_submission(path, registry=registry, data_root=real_root, settings=SETTINGS)
    assert not ci.passed and "outside submissions/" in ci.to_text()


def test_cli_validate_local_exit_code(prepared, registry, real_root, capsys):
    argv = ["submission", "validate", str(prepared / f"{MODEL_ID}.yaml"), "--registry", str(registry),
            "--data-root", str(real_root), "--subset-size", "32"]
    assert cli_main(argv + ["--local"]) == 0, capsys.readouterr().out
    assert "matches onnxruntime" in capsys.readouterr().out
    assert cli_main(argv) == 1  # without --local: CI's rules (submissions/ folder, a Hub source)


def test_graph_served_by_the_hub_passes_ci_validation(prepared, registry, real_root, tmp_path, monkeypatch):
    """The pull request's form: the .onnx file on the Hub at a commit, the YAML in submissions/."""
    from hub_server import HubServer

    data = yaml.safe_load((prepared / f"{MODEL_ID}.yaml").read_text())
    with HubServer() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        rev = hub.add_file("lab/onnx", f"{DATASET}/{MODEL_ID}.onnx", (prepared / f"{MODEL_ID}.onnx").read_bytes())
        data["weights"]["sources"] = [{"kind": "hub", "repo_id": "lab/onnx", "filename": f"{DATASET}/{MODEL_ID}.onnx",
                                       "revision": rev}]
        path = tmp_path / "submissions" / f"{MODEL_ID}.yaml"
        path.parent.mkdir()
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        report = validate_submission(path, registry=registry, data_root=real_root, settings=SETTINGS)
    assert report.passed, report.to_text()
    assert {"sources", "sha256 and size", "onnx graph", "matches onnxruntime"} <= {
        c.name for c in report.checks if c.status == "pass"}


def test_converted_model_equals_onnxruntime_on_real_images_and_gradients_flow(prepared, trained, real_root):
    from medbench.submission.schema import load_yaml, parse_submission

    entry = parse_submission(load_yaml(prepared / f"{MODEL_ID}.yaml", local=True)).to_entry()
    model = load_entry_model(entry, folder=prepared)
    x, y = load_dataset(DATASET, "test", root=real_root).as_float()
    diff = onnxruntime_difference(model, prepared / f"{MODEL_ID}.onnx", x)
    assert diff <= PARITY_ATOL
    with torch.no_grad():
        logits, reference = model(x), trained(x)
    assert torch.allclose(logits, reference, atol=PARITY_ATOL)
    assert torch.equal(logits.argmax(1), reference.argmax(1))
    recall = [(logits.argmax(1)[y.flatten() == k] == k).float().mean().item() for k in (0, 1)]
    assert np.mean(recall) > 0.55, recall  # balanced accuracy of the trained model, through the converted graph
    # one FGSM step at 8/255: the input gradient is non-zero and moves the logits
    xb, yb = x[:32].clone().requires_grad_(True), y[:32].flatten()
    nn.functional.cross_entropy(model(xb), yb).backward()
    assert xb.grad is not None and (xb.grad.abs().flatten(1).sum(1) > 0).all()
    adv = (xb + 8 / 255 * xb.grad.sign()).clamp(0, 1).detach()
    assert not torch.equal(adv, x[:32])
    with torch.no_grad():
        loss_clean = nn.functional.cross_entropy(model(x[:32]), yb)
        loss_adv = nn.functional.cross_entropy(model(adv), yb)
    assert loss_adv > loss_clean


def test_importing_onnx2torch_does_not_import_torchvision():
    import subprocess
    import sys

    code = ("import sys; from medbench.models.onnx_convert import import_onnx2torch; import_onnx2torch(); "
            "print(sorted(n for n in sys.modules if n.split('.')[0] == 'torchvision'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_onnx_architecture_and_format_go_together():
    from medbench.schema.entry import EntryError, parse_entry

    data = yaml.safe_load((REPO / "model_zoo" / DATASET / "Baseline_SmallCNN_ERM.yaml").read_text())
    with pytest.raises(EntryError, match="weights.format onnx needs architecture: onnx"):
        parse_entry({**data, "weights": {**data["weights"], "format": "onnx"}})
    with pytest.raises(EntryError, match="needs weights.format: onnx"):
        parse_entry({**data, "architecture": "onnx", "architecture_kwargs": {}})
    with pytest.raises(EntryError, match="architecture_kwargs must be empty"):
        parse_entry({**data, "architecture": "onnx", "weights": {**data["weights"], "format": "onnx"}})
    assert parse_entry({**data, "architecture": "onnx", "architecture_kwargs": {},
                        "weights": {**data["weights"], "format": "onnx"}}).is_onnx


# ----------------------------------------------------------------------------- hostile graphs

def _classifier(extra_nodes=(), extra_inits=(), opsets=(("", 17),)) -> onnx.ModelProto:
    """A valid breastmnist classifier (Flatten -> Gemm) with ``extra_nodes`` between the image and Flatten."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])
    w = helper.make_tensor("W", TensorProto.FLOAT, [784, 2], np.zeros(784 * 2, np.float32).tolist())
    b = helper.make_tensor("B", TensorProto.FLOAT, [2], [0.0, 0.0])
    last = extra_nodes[-1].output[0] if extra_nodes else "input"
    nodes = [*extra_nodes, helper.make_node("Flatten", [last], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "W", "B"], ["logits"], name="head")]
    graph = helper.make_graph(nodes, "g", [x], [out], initializer=[w, b, *extra_inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])


def _refusal(proto, limits=OnnxLimits()) -> str:
    with pytest.raises(OnnxGraphError) as info:
        check_graph(proto, (1, 28, 28), 2, limits=limits)
    return str(info.value)


def test_a_plain_standard_graph_passes():
    summary = check_graph(_classifier([helper.make_node("Relu", ["input"], ["r"], name="relu")]), (1, 28, 28), 2)
    assert summary.num_parameters == 784 * 2 + 2 and summary.ops == {"Relu": 1, "Flatten": 1, "Gemm": 1}


def test_custom_domain_and_unlisted_ops_are_all_named_in_one_error():
    nodes = [helper.make_node("Exec", ["input"], ["e"], name="payload", domain="com.evil"),
             helper.make_node("Round", ["e"], ["r"], name="quantise"),
             helper.make_node("RandomNormalLike", ["r"], ["z"], name="noise")]
    text = _refusal(_classifier(nodes, opsets=(("", 17), ("com.evil", 1))))
    assert "node 'payload' (com.evil::Exec)" in text and "custom-domain" in text
    assert "custom opset domain(s) com.evil" in text
    assert "node 'quantise' (Round)" in text and "node 'noise' (RandomNormalLike)" in text
    assert "Fix:" in text


def test_huge_initializers_are_refused_before_anything_is_allocated():
    # declared shape only (no data): the check counts dims x itemsize, never what the file happens to hold
    declared = TensorProto(name="huge", data_type=TensorProto.FLOAT, dims=[MAX_INITIALIZER_BYTES // 4 + 1])
    text = _refusal(_classifier(extra_inits=[declared]))
    assert "above the limit" in text and "initializer 'huge'" in text
    real = helper.make_tensor("big", TensorProto.FLOAT, [4096], np.ones(4096, np.float32).tolist())
    text = _refusal(_classifier(extra_inits=[real]), OnnxLimits(max_initializer_bytes=10_000))
    assert "initializer 'big' 16384 bytes" in text
    text = _refusal(_classifier([helper.make_node("Relu", ["input"], ["r"])]), OnnxLimits(max_nodes=2))
    assert "3 nodes, above the limit of 2" in text


def test_external_data_paths_are_refused_and_never_opened(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(784 * 2, dtype=np.float32).tobytes())
    proto = _classifier()
    weight = proto.graph.initializer[0]
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "secret.bin"), ("offset", "0"), ("length", str(784 * 2 * 4))):
        weight.external_data.add(key=key, value=value)
    path = tmp_path / "model.onnx"
    path.write_bytes(proto.SerializeToString())
    loaded = read_onnx(path)
    assert loaded.graph.initializer[0].raw_data == b""  # the path in the file was not followed
    text = _refusal(loaded)
    assert "initializer 'W' stores its data outside the file" in text and "'secret.bin'" in text


@pytest.mark.parametrize("op", ["If", "Loop"])
def test_control_flow_is_refused(op):
    branch_out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 28, 28])
    body = helper.make_graph([helper.make_node("Identity", ["input"], ["y"])], "branch", [], [branch_out])
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    if op == "If":
        node = helper.make_node("If", ["cond"], ["z"], name="branchy", then_branch=body, else_branch=body)
    else:
        trip = helper.make_tensor("trip", TensorProto.INT64, [], [3])
        node = helper.make_node("Loop", ["trip", "cond"], ["z"], name="loopy", body=body)
    inits = [cond] + ([trip] if op == "Loop" else [])
    text = _refusal(_classifier([node], extra_inits=inits))
    assert "control flow is refused" in text and f"({op})" in text


def test_wrong_input_and_output_shapes_are_named():
    proto = _classifier()
    proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 3
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 8
    assert "input 'input' has shape [8, 3, 28, 28], but the dataset's images are ['N', 1, 28, 28]" in _refusal(proto)
    proto = _classifier()
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 5
    assert "the dataset has 2 classes" in _refusal(proto)


def test_hostile_graph_in_a_prepared_folder_fails_validation_before_conversion(prepared, registry, real_root,
                                                                             monkeypatch):
    import medbench.submission.onnx_model as onnx_model

    proto = _classifier([helper.make_node("Exec", ["input"], ["e"], name="payload", domain="com.evil")],
                        opsets=(("", 17), ("com.evil", 1)))
    onnx_file = prepared / f"{MODEL_ID}.onnx"
    onnx_file.write_bytes(proto.SerializeToString())
    path = prepared / f"{MODEL_ID}.yaml"
    data = yaml.safe_load(path.read_text())
    data["weights"].update(sha256=sha256sum(onnx_file), size_bytes=onnx_file.stat().st_size)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setattr(onnx_model, "convert_onnx", lambda proto: pytest.fail("a refused graph was converted"))
    report = validate_submission(path, registry=registry, data_root=real_root, settings=SETTINGS, local=True)
    check = next(c for c in report.checks if c.name == "onnx graph")
    assert check.failed and "node 'payload' (com.evil::Exec)" in check.message and check.fix
    assert not report.passed and not any(c.stage == "admission" and c.status == "pass" for c in report.checks)
