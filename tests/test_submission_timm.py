"""``timm/<name>`` architectures: built like timm builds them, never downloaded, kwargs refused before allocation.

A timm submission is served by the loopback Hub through the real huggingface_hub client and goes through
validation and reproduction (clean and a cheap Linf attack) like any other.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml

from conftest import REPO, need_real, train_small_model
from medbench.models.architectures import ArchitectureKwargsError, UnknownArchitectureError, build_architecture, \
    count_parameters, estimate_parameters
from medbench.models.timm_support import import_timm
from test_submission import DATASET, failed, model_bytes, submit, validate
from test_submission import _endpoint, claims_for, hub  # noqa: F401  (the loopback Hub fixtures, shared)

TINY = ("timm/resnet18", {"channels": [8, 16, 32, 64]})


@pytest.fixture
def registry(tmp_path):
    root = tmp_path / "model_zoo"
    (root / DATASET).mkdir(parents=True)
    return root


@pytest.mark.slow
def test_importing_and_building_timm_does_not_import_torchvision():
    code = ("import sys; from medbench.models.architectures import build_architecture as b; "
            "m = b('timm/vit_tiny_patch16_224', in_channels=1, num_classes=2, img_size=28, patch_size=7, embed_dim=16, "
            "depth=1, num_heads=1); import timm; "
            "print(sorted(n for n in sys.modules if n.split('.')[0] == 'torchvision'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_timm_model_is_timm_create_model_behind_normalisation():
    timm = import_timm()
    torch.manual_seed(0)
    ours = build_architecture(TINY[0], in_channels=3, num_classes=5, mean=[0.4, 0.5, 0.6], std=0.25, **TINY[1])
    ref = timm.create_model("resnet18", pretrained=False, num_classes=5, in_chans=3, **TINY[1]).eval()
    assert ours.net.state_dict().keys() == ref.state_dict().keys()
    ref.load_state_dict(ours.net.state_dict())
    ours.eval()
    x = torch.rand(4, 3, 28, 28)
    mean = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)
    torch.testing.assert_close(ours(x), ref((x - mean) / 0.25))
    n = estimate_parameters(TINY[0], in_channels=3, num_classes=5, **TINY[1])
    assert n == count_parameters(ours) == count_parameters(ref)


@pytest.mark.parametrize("name, kwargs, words", [
    ("timm/resnet18", {"pretrained": True}, ["pretrained", "never downloaded"]),
    ("timm/resnet18", {"checkpoint_path": "/etc/passwd"}, ["checkpoint_path", "safetensors"]),
    ("timm/vit_tiny_patch16_224", {"embed_dim": 10 ** 9}, ["embed_dim", "outside the range"]),
    ("timm/vit_tiny_patch16_224", {"depth": 2.5}, ["depth", "integer"]),
    ("timm/vit_tiny_patch16_224", {"img_size": 28, "patch_size": 5}, ["img_size 28", "multiple of patch_size 5"]),
    ("timm/resnet18", {"exec": "import os"}, ["exec", "not an accepted timm argument"]),
    ("timm/resnet18", {"drop_rte": 0.1}, ["did you mean drop_rate"]),
    ("timm/resnet18", {"in_chans": 3}, ["in_chans", "set by medbench"]),
    ("timm/resnet18", {"global_pool": "evil"}, ["global_pool", "one of"]),
])
def test_hostile_timm_kwargs_are_refused_before_building(name, kwargs, words):
    with pytest.raises(ArchitectureKwargsError) as exc:
        estimate_parameters(name, in_channels=1, num_classes=2, **kwargs)
    for w in words:
        assert w in str(exc.value), str(exc.value)


def test_unknown_timm_model_suggests_close_names():
    with pytest.raises(UnknownArchitectureError) as exc:
        build_architecture("timm/resnet1888", in_channels=1, num_classes=2)
    assert "timm/resnet18" in str(exc.value) and "Did you mean" in str(exc.value)


def test_oversized_timm_model_is_refused_without_allocation():
    # ViT-Huge has 632M parameters: counted on the meta device, refused before a real build
    with pytest.raises(ArchitectureKwargsError) as exc:
        build_architecture("timm/vit_huge_patch14_224", in_channels=1, num_classes=2)
    assert "limit" in str(exc.value)


def test_hostile_timm_submission_is_refused_with_the_reason(hub, tmp_path, registry, real_root):
    """The submission path names the bad kwarg in the 'architecture builds' check; nothing is downloaded."""
    def edit(d):
        d["architecture_kwargs"] = {"pretrained": True, "embed_dim": 10 ** 9}

    path = submit(hub, tmp_path, "Evil2026Timm", b"never fetched", {}, arch="timm/vit_tiny_patch16_224",
                  n_params=1, edit=edit, mode="404")
    report = validate(path, registry, real_root)
    c = failed(report, "architecture builds")
    assert "pretrained" in c.message and "embed_dim" in c.message
    assert any(k.name == "download" and k.status == "skip" for k in report.checks), report.to_text()


@pytest.mark.slow
def test_timm_submission_validates_and_evaluates_end_to_end(hub, tmp_path, registry, real_root):
    need_real(real_root, f"{DATASET}.npz")
    torch.set_num_threads(1)
    model = train_small_model(real_root, DATASET, epochs=6, arch=TINY[0], **TINY[1])
    claimed = claims_for(model, real_root)
    n = count_parameters(model)

    def edit(d):
        d["architecture_kwargs"] = dict(TINY[1])

    path = submit(hub, tmp_path, "Timm2026ResNet", model_bytes(model, tmp_path), claimed, arch=TINY[0], n_params=n,
                  edit=edit)
    assert yaml.safe_load(path.read_text())["architecture"] == "timm/resnet18"
    report = validate(path, registry, real_root, reproduce=True)
    assert report.passed, report.to_text()
    passed = {c.name for c in report.checks if c.status == "pass"}
    assert {"architecture builds", "parameter count", "strict load", "preprocessing", "clean balanced accuracy",
            "robust balanced accuracy (Linf-2/255)"} <= passed
