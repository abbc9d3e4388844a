"""Hostile pull requests (issue 13): each class of attack gets a clear, one-line-fixable rejection and nothing else.

One test per class of attack (not per example). Weights are served by the loopback Hub through the real
huggingface_hub client; models are small, freshly initialised CNNs (training is not needed to reach the checks).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os

import pytest
import torch
import yaml
from torch import nn

from hub_server import HubServer
from medbench.architectures import build_architecture, count_parameters, register_architecture
from medbench.cli import main as cli_main
from medbench.submission import parse_submission
from test_submission import DATASET, WIDTH, base_data, failed, model_bytes, submit, validate

@pytest.fixture(scope="module")
def hub():
    with HubServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _endpoint(hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)


@pytest.fixture
def registry(tmp_path):
    root = tmp_path / "model_zoo"
    (root / DATASET).mkdir(parents=True)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """safetensors bytes of a freshly initialised smallcnn for the dataset (1 channel, 2 classes)."""
    torch.manual_seed(0)
    model = build_architecture("smallcnn", in_channels=1, num_classes=2, mean=0.5, std=0.5, width=WIDTH)
    return model_bytes(model, tmp_path_factory.mktemp("w"))


def one_line_fix(check) -> None:
    assert check.fix and "\n" not in check.fix, check


def all_text(report) -> str:
    return report.to_text() + "\n" + report.to_markdown()


def write(tmp_path, name: str, text: str | bytes):
    folder = tmp_path / "submissions"
    folder.mkdir(exist_ok=True)
    path = folder / name
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def good_text(model_id: str) -> str:
    d = base_data(model_id, "lab/x", f"{DATASET}/model.safetensors", "0" * 40, "0" * 64, 1, 1, {})
    return yaml.safe_dump(d, sort_keys=False)


# ----------------------------------------------------------------------------- 1. reserved names

def test_reserved_baseline_prefix_is_refused(hub, tmp_path, registry, weights, real_root):
    """Baseline_* ids belong to the maintained zoo (the site labels them baselines; they are references)."""
    for model_id, paper in (("Baseline_Evil_ERM", None), ("Baseline_Sneaky_ERM", "keep")):
        def edit(d):
            if paper is None:
                d["paper"] = None

        c = failed(validate(submit(hub, tmp_path, model_id, weights, {}, edit=edit), registry, real_root), "reserved id")
        assert "Baseline_" in c.message and "reserved" in c.message
        one_line_fix(c)


# ----------------------------------------------------------------------------- 2. files outside the submission

def test_files_outside_submissions_are_refused_and_nothing_leaks(tmp_path, registry):
    secret = tmp_path / "secret.env"
    secret.write_text("id: Leak2026Secret\nAPI_TOKEN: [hunter2-SECRET\n")
    link = tmp_path / "submissions" / "Link2026Secret.yaml"
    link.parent.mkdir()
    link.symlink_to(secret)
    outside = tmp_path / "elsewhere" / "Out2026Side.yaml"
    outside.parent.mkdir()
    outside.write_text(good_text("Out2026Side"))
    dotdot = tmp_path / "submissions" / ".." / "elsewhere" / "Out2026Side.yaml"
    broken = write(tmp_path, "Broken2026Yaml.yaml", "id: Broken2026Yaml\ntoken: [hunter2-SECRET\n")
    for path, expect in ((link, "symbolic link"), (outside, "outside submissions/"), (dotdot, "outside submissions/"),
                         (broken, "line 2")):
        report = validate_any(path, registry)
        c = failed(report, "file")
        assert expect in c.message, c.message
        one_line_fix(c)
        text = all_text(report)
        assert "hunter2" not in text and str(tmp_path) not in text, text
    # an absolute path on the command line is shown relative to submissions/
    good = write(tmp_path, "Abs2026Path.yaml", good_text("Abs2026Path"))
    text = all_text(validate_any(good.resolve(), registry))
    assert str(tmp_path) not in text and "submissions/Abs2026Path.yaml" in text


def validate_any(path, registry):
    from medbench.submission import validate_submission

    return validate_submission(path, registry=registry)


