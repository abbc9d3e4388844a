"""Submissions by pull request: a good submission passes validation and reproduction; bad ones are
rejected with a message naming the problem.

Weights are served by the loopback Hub (tests/hub_server.py) through the real huggingface_hub client.
The model is a small CNN trained on real BreastMNIST in the test; the registry is a temporary copy.
"""

from __future__ import annotations

import datetime as dt
import io
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from conftest import REPO, need_real, train_small_model
from hub_server import HubServer
from medbench.models.architectures import build_architecture, count_parameters, register_architecture
from medbench.cli import main as cli_main
from medbench.evaluate import benchmark
from medbench.protocol import load_protocol
from medbench.submission import ReproduceSettings, read_submission, validate_submission
from medbench.submission.evaluation import reproduce_protocol
from medbench.models.weights import save_weights, sha256sum

DATASET = "breastmnist"
WIDTH = 8
# Reduced attack budget for tests (the protocol's 100 iterations / 5000 queries are for CI on submissions).
SETTINGS = ReproduceSettings(subset_size=32, n_iter=5, square_queries=20)


# ----------------------------------------------------------------------------- test-only architectures

class _Wrapped(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner


class _Softmax(_Wrapped):
    def forward(self, x):
        return torch.softmax(self.inner(x), dim=1)


class _Noisy(_Wrapped):
    def forward(self, x):
        return self.inner((x + 0.1 * torch.randn_like(x)).clamp(0, 1))


class _Purify(_Wrapped):
    """One gradient step on the input inside forward (a 'dynamic' defence)."""

    def forward(self, x):
        with torch.inference_mode(False), torch.enable_grad():
            z = x.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(self.inner(z).logsumexp(1).sum(), z)
        return self.inner((x - 0.01 * g.sign()).clamp(0, 1))


def _register(name: str, cls):
    @register_architecture(name)
    def build(*, in_channels, num_classes, mean, std, width: int = 16):
        return cls(build_architecture("smallcnn", in_channels=in_channels, num_classes=num_classes, mean=mean,
                                      std=std, width=width))


_register("test_submission_softmax", _Softmax)
_register("test_submission_noisy", _Noisy)
_register("test_submission_purify", _Purify)


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def trained(real_root):
    need_real(real_root, f"{DATASET}.npz")
    torch.set_num_threads(1)
    return train_small_model(real_root, DATASET, epochs=6, width=WIDTH)


@pytest.fixture(scope="module")
def hub():
    with HubServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _endpoint(hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)


@pytest.fixture
def registry(tmp_path):
    """A temporary registry with the committed Baseline_SmallCNN_ERM entry (never the real model_zoo/)."""
    root = tmp_path / "model_zoo"
    (root / DATASET).mkdir(parents=True)
    for name in ("Baseline_SmallCNN_ERM.yaml", "Baseline_SmallCNN_ERM.safetensors"):
        shutil.copy(REPO / "model_zoo" / DATASET / name, root / DATASET / name)
    return root


@pytest.fixture(scope="module")
def claims(trained, real_root):
    """What `medbench evaluate` measures for the trained model: the numbers an honest author claims."""
    return claims_for(trained, real_root)


def claims_for(model: nn.Module, real_root: Path) -> dict:
    """The clean and Linf-2/255 numbers the reproduction settings measure for ``model`` (honest claims)."""
    sub = read_submission_dict(base_data("Good2026Claims", "org/x", "f.safetensors", "0" * 40, "0" * 64, 1, 1, {}))
    proto = reproduce_protocol(load_protocol(), sub, SETTINGS)
    r = benchmark(model, DATASET, threats=["clean", "Linf"], protocol=proto, data_root=real_root, progress=False)
    return {"clean_balanced_accuracy": round(r.clean.balanced_accuracy, 4), "clean_accuracy": round(r.clean.accuracy, 4),
            "clean_auc": round(r.clean.auc, 4),
            "robust_balanced_accuracy": round(r.adversarial["Linf-2/255"].robust_balanced_accuracy, 4),
            "threat": "Linf-2/255"}


# ----------------------------------------------------------------------------- helpers

def read_submission_dict(data: dict):
    from medbench.submission import parse_submission

    return parse_submission(data)


def base_data(model_id: str, repo_id: str, filename: str, revision: str, sha: str, size: int, n_params: int,
              claimed: dict, arch: str = "smallcnn") -> dict:
    return {
        "id": model_id, "dataset": DATASET, "size": 28, "task": "binary-class",
        "architecture": arch, "architecture_kwargs": {"width": WIDTH},
        "preprocessing": {"mean": [0.5], "std": [0.5]},
        "recipe": {"method": "erm", "epochs": 6, "optimizer": "adam", "lr": 0.003, "batch_size": 64, "seed": 0},
        "paper": {"title": "A small CNN for breast ultrasound", "url": "https://arxiv.org/abs/2601.00001",
                  "authors": ["A. Author"], "venue": "arXiv", "year": 2026},
        "license": "Apache-2.0", "date_added": dt.date(2026, 11, 22),
        "description": "Test submission.",
        "weights": {"format": "safetensors", "sha256": sha, "size_bytes": size, "num_parameters": n_params,
                    "sources": [{"kind": "hub", "repo_id": repo_id, "filename": filename, "revision": revision}]},
        "claimed": dict(claimed) or {"clean_balanced_accuracy": 0.5, "clean_accuracy": 0.5},
    }


def model_bytes(model: nn.Module, tmp_path: Path) -> bytes:
    path = tmp_path / "w.safetensors"
    save_weights(model, path)
    return path.read_bytes()


def submit(hub: HubServer, tmp_path: Path, model_id: str, data: bytes, claimed: dict, *, mode: str = "ok",
           arch: str = "smallcnn", n_params: int | None = None, edit=None, pinned: bytes | None = None) -> Path:
    """Serve ``data`` on the loopback Hub and write submissions/<model_id>.yaml pinning ``pinned`` (default: data)."""
    import hashlib

    repo = f"lab/{model_id.lower()}"
    rev = hub.add_file(repo, f"{DATASET}/model.safetensors", data, mode=mode)
    pinned = data if pinned is None else pinned
    if n_params is None:
        n_params = count_parameters(build_architecture(arch, in_channels=1, num_classes=2, mean=0.5, std=0.5,
                                                       width=WIDTH))
    d = base_data(model_id, repo, f"{DATASET}/model.safetensors", rev, hashlib.sha256(pinned).hexdigest(),
                  len(pinned), n_params, claimed, arch)
    if edit is not None:
        edit(d)
    folder = tmp_path / "submissions"
    folder.mkdir(exist_ok=True)
    path = folder / f"{model_id}.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def validate(path: Path, registry: Path, real_root: Path, reproduce: bool = False):
    return validate_submission(path, registry=registry, reproduce=reproduce, settings=SETTINGS, data_root=real_root)


def failed(report, name: str):
    """The failed check called ``name``; fails the test (showing the report) when it passed or is absent."""
    for c in report.checks:
        if c.name == name and c.failed:
            return c
    pytest.fail(f"expected check {name!r} to fail:\n{report.to_text()}")


# ----------------------------------------------------------------------------- the good submission

def test_good_submission_passes_validation_and_reproduction(hub, tmp_path, registry, trained, claims, real_root):
    path = submit(hub, tmp_path, "Good2026SmallCnn", model_bytes(trained, tmp_path), claims)
    report = validate(path, registry, real_root, reproduce=True)
    assert report.passed, report.to_text()
    names = {c.name for c in report.checks if c.status == "pass"}
    assert {"schema", "unique id", "licence", "links", "paths", "sha256 and size", "safetensors format", "strict load",
            "parameter count", "outputs_are_logits", "deterministic_forward", "no_autograd_in_forward",
            "clean balanced accuracy", "clean accuracy", "robust balanced accuracy (Linf-2/255)"} <= names
    md = report.to_markdown()
    assert "passes" in md and "| clean balanced accuracy |" in md and "Measured vs claimed" in md
    # the robust number was re-measured on the subset, with its interval stated
    robust = next(c for c in report.checks if c.name.startswith("robust"))
    assert abs(robust.measured - claims["robust_balanced_accuracy"]) < 1e-3 and "95% bootstrap CI" in robust.message


def test_cli_validate_exit_codes_and_report(hub, tmp_path, registry, trained, claims, real_root):
    data = model_bytes(trained, tmp_path)
    good = submit(hub, tmp_path, "Cli2026Good", data, claims)
    bad = submit(hub, tmp_path, "Cli2026Bad", data, claims, edit=lambda d: d.update(license="unknown"))
    common = ["--registry", str(registry), "--data-root", str(real_root), "--subset-size", "32"]
    md = tmp_path / "report.md"
    assert cli_main(["submission", "validate", str(good), "--report", str(md), *common]) == 0
    assert "all checks pass" in md.read_text()
    assert cli_main(["submission", "validate", str(bad), "--report", str(md), *common]) == 1
    text = md.read_text()
    assert "changes needed" in text and "What to fix" in text and "SPDX" in text


# ----------------------------------------------------------------------------- bad submissions: the file

def test_missing_field_is_named(hub, tmp_path, registry, trained, real_root):
    path = submit(hub, tmp_path, "Missing2026Recipe", model_bytes(trained, tmp_path), {},
                  edit=lambda d: d.pop("recipe"))
    c = failed(validate(path, registry, real_root), "schema")
    assert "field 'recipe': required field is missing" in c.message


def test_unknown_field_is_named(hub, tmp_path, registry, trained, real_root):
    path = submit(hub, tmp_path, "Unknown2026Field", model_bytes(trained, tmp_path), {},
                  edit=lambda d: d["claimed"].update(robust_acc=0.5))
    c = failed(validate(path, registry, real_root), "schema")
    assert "field 'claimed.robust_acc': unknown field" in c.message


def test_duplicate_id_is_rejected(hub, tmp_path, registry, trained, real_root):
    path = submit(hub, tmp_path, "Baseline_SmallCNN_ERM", model_bytes(trained, tmp_path), {},
                  edit=lambda d: d.update(paper=None))
    c = failed(validate(path, registry, real_root), "unique id")
    assert "already taken" in c.message and "Baseline_SmallCNN_ERM" in c.message


def test_missing_licence_is_rejected(hub, tmp_path, registry, trained, real_root):
    path = submit(hub, tmp_path, "NoLicence2026Cnn", model_bytes(trained, tmp_path), {},
                  edit=lambda d: d.pop("license"))
    assert "field 'license': required field is missing" in failed(validate(path, registry, real_root), "schema").message
    path = submit(hub, tmp_path, "TbdLicence2026Cnn", model_bytes(trained, tmp_path), {},
                  edit=lambda d: d.update(license="TBD"))
    c = failed(validate(path, registry, real_root), "licence")
    assert "'TBD'" in c.message and "SPDX" in c.fix


def test_path_traversal_in_filename_is_rejected(hub, tmp_path, registry, trained, real_root):
    def edit(d):
        d["weights"]["sources"][0]["filename"] = "../../etc/model.safetensors"

    report = validate(submit(hub, tmp_path, "Traversal2026Cnn", model_bytes(trained, tmp_path), {}, edit=edit),
                      registry, real_root)
    c = failed(report, "paths")
    assert "weights.sources[0].filename" in c.message and "path traversal" in c.message
    assert "weights.sources.0.hub.filename" in failed(report, "schema").message


def test_absolute_path_anywhere_is_rejected(hub, tmp_path, registry, trained, real_root):
    report = validate(submit(hub, tmp_path, "Absolute2026Cnn", model_bytes(trained, tmp_path), {},
                             edit=lambda d: d.update(description="/home/me/runs/best")), registry, real_root)
    assert "field 'description'" in failed(report, "paths").message


def test_malformed_link_is_rejected(hub, tmp_path, registry, trained, real_root):
    def edit(d):
        d["paper"]["url"] = "https://not a host/paper"

    c = failed(validate(submit(hub, tmp_path, "Link2026Cnn", model_bytes(trained, tmp_path), {}, edit=edit),
                        registry, real_root), "links")
    assert "paper.url" in c.message


def test_robust_claim_above_clean_claim_is_rejected(hub, tmp_path, registry, trained, real_root):
    claimed = {"clean_balanced_accuracy": 0.70, "clean_accuracy": 0.75, "robust_balanced_accuracy": 0.80,
               "threat": "Linf-2/255"}
    c = failed(validate(submit(hub, tmp_path, "Robust2026Above", model_bytes(trained, tmp_path), claimed),
                        registry, real_root), "claims")
    assert "higher than the claimed clean balanced accuracy" in c.message


def test_unknown_threat_label_is_rejected(hub, tmp_path, registry, trained, real_root):
    claimed = {"clean_balanced_accuracy": 0.70, "clean_accuracy": 0.75, "robust_balanced_accuracy": 0.5,
               "threat": "Linf-8/255"}
    c = failed(validate(submit(hub, tmp_path, "Threat2026Unknown", model_bytes(trained, tmp_path), claimed),
                        registry, real_root), "claims")
    assert "'Linf-8/255' is not a protocol threat" in c.message and "Linf-2/255" in c.message


# ----------------------------------------------------------------------------- bad submissions: the weights

def test_wrong_sha256_is_rejected(hub, tmp_path, registry, trained, real_root):
    data = model_bytes(trained, tmp_path)
    wrong = data[:-1] + bytes([data[-1] ^ 1])  # same size, one byte different
    report = validate(submit(hub, tmp_path, "Sha2026Wrong", data, {}, pinned=wrong), registry, real_root)
    c = failed(report, "sha256 and size")
    assert "sha256 mismatch" in c.message and "sha256sum" in c.fix
    assert any(x.name == "admission checks" and x.status == "skip" for x in report.checks)


def test_truncated_weights_are_rejected(hub, tmp_path, registry, trained, real_root):
    c = failed(validate(submit(hub, tmp_path, "Trunc2026Cnn", model_bytes(trained, tmp_path), {}, mode="truncated"),
                        registry, real_root), "sha256 and size")
    assert "size mismatch" in c.message and "truncated" in c.fix


def test_html_served_as_weights_is_rejected(hub, tmp_path, registry, trained, real_root):
    c = failed(validate(submit(hub, tmp_path, "Html2026Page", model_bytes(trained, tmp_path), {}, mode="html"),
                        registry, real_root), "sha256 and size")
    assert "HTML" in c.message


def test_pickle_weights_are_rejected_without_unpickling(hub, tmp_path, registry, trained, real_root):
    buf = io.BytesIO()
    torch.save(trained.state_dict(), buf)
    c = failed(validate(submit(hub, tmp_path, "Pickle2026Cnn", buf.getvalue(), {}), registry, real_root),
               "safetensors format")
    assert "pickle" in c.message and "never unpickles" in c.message


def test_unreachable_weights_are_rejected(hub, tmp_path, registry, trained, real_root):
    c = failed(validate(submit(hub, tmp_path, "Gone2026Cnn", model_bytes(trained, tmp_path), {}, mode="404"),
                        registry, real_root), "reachable")
    assert "not found" in c.message


# ----------------------------------------------------------------------------- bad submissions: the model

def test_wrong_input_channels_are_rejected(hub, tmp_path, registry, real_root):
    rgb = build_architecture("smallcnn", in_channels=3, num_classes=2, mean=0.5, std=0.5, width=WIDTH)
    c = failed(validate(submit(hub, tmp_path, "Rgb2026Cnn", model_bytes(rgb, tmp_path), {},
                               n_params=count_parameters(rgb)), registry, real_root), "strict load")
    assert "Wrong input channels" in c.message and "3 channel(s)" in c.message and "have 1" in c.message


def test_parameter_count_mismatch_is_rejected(hub, tmp_path, registry, trained, real_root):
    c = failed(validate(submit(hub, tmp_path, "Params2026Cnn", model_bytes(trained, tmp_path), {}, n_params=1234),
                        registry, real_root), "parameter count")
    assert "entry says 1234" in c.message


@pytest.mark.parametrize("arch, model_id, check", [
    ("test_submission_softmax", "Softmax2026Cnn", "outputs_are_logits"),
    ("test_submission_noisy", "Noisy2026Cnn", "deterministic_forward"),
    ("test_submission_purify", "Purify2026Cnn", "no_autograd_in_forward"),
])
def test_admission_rules_reject_the_model(hub, tmp_path, registry, trained, real_root, arch, model_id, check):
    model = build_architecture(arch, in_channels=1, num_classes=2, mean=0.5, std=0.5, width=WIDTH)
    model.inner.load_state_dict(trained.state_dict())
    report = validate(submit(hub, tmp_path, model_id, model_bytes(model, tmp_path), {}, arch=arch), registry, real_root,
                      reproduce=True)  # reproduction is skipped: a model that is not admitted is not evaluated
    c = failed(report, check)
    assert c.stage == "admission" and c.fix
    assert any(x.stage == "reproduce" and x.status == "skip" for x in report.checks)


def test_inflated_clean_claim_fails_reproduction(hub, tmp_path, registry, trained, claims, real_root):
    inflated = {k: v for k, v in claims.items() if not k.startswith(("robust", "threat"))}  # clean claims only
    inflated["clean_accuracy"] = round(claims["clean_accuracy"] + 0.05, 4)
    report = validate(submit(hub, tmp_path, "Inflated2026Cnn", model_bytes(trained, tmp_path), inflated),
                      registry, real_root, reproduce=True)
    c = failed(report, "clean accuracy")
    assert "-5.00 points" in c.message and c.claimed == inflated["clean_accuracy"]
    assert not any(x.failed for x in report.checks if x.name != "clean accuracy"), report.to_text()
    assert "| clean accuracy |" in report.to_markdown()


def test_robust_claim_outside_the_remeasured_interval_fails(hub, tmp_path, registry, trained, real_root):
    claimed = {"clean_balanced_accuracy": 0.99, "clean_accuracy": 0.99, "robust_balanced_accuracy": 0.99,
               "threat": "Linf-2/255"}  # consistent on paper (robust <= clean), far above what the model does
    report = validate(submit(hub, tmp_path, "Robust2026Inflated", model_bytes(trained, tmp_path), claimed),
                      registry, real_root, reproduce=True)
    c = failed(report, "robust balanced accuracy (Linf-2/255)")
    assert "95% bootstrap CI" in c.message and c.measured < 0.99 and "AutoAttack" in c.fix


def test_hostile_title_is_accepted_and_escaped_in_the_report(hub, tmp_path, registry, trained, real_root):
    title = '<script>alert("x")</script> | **bold**'

    def edit(d):
        d["paper"]["title"] = title

    path = submit(hub, tmp_path, "Hostile2026Title", model_bytes(trained, tmp_path), {}, edit=edit)
    report = validate(path, registry, real_root)
    assert report.passed, report.to_text()
    assert read_submission(path).paper.title == title
    assert "<script>" not in report.to_markdown()


def test_template_is_a_valid_submission():
    """submissions/TEMPLATE.yaml stays schema-valid (only its placeholder hashes are fake)."""
    sub = read_submission(REPO / "submissions" / "TEMPLATE.yaml")
    assert sub.claimed.threat == "Linf-2/255" and sub.weights.sources[0].kind == "hub"
    assert "claimed" not in sub.to_entry().model_dump()


def test_yaml_aliases_and_non_mappings_are_rejected(tmp_path):
    (tmp_path / "submissions").mkdir()
    bomb = tmp_path / "submissions" / "Bomb2026Yaml.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                    "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n")
    report = validate_submission(bomb, registry=tmp_path)
    assert not report.passed and "YAML aliases" in report.failures[0].message
    listing = tmp_path / "submissions" / "List2026Yaml.yaml"
    listing.write_text("- id: List2026Yaml\n")
    assert "must be a YAML mapping" in validate_submission(listing, registry=tmp_path).failures[0].message
