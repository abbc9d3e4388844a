"""Hostile pull requests (issue 13): each class of attack gets a clear, one-line-fixable rejection and nothing else.

One test per class of attack (not per example). Weights are served by the loopback Hub through the real
huggingface_hub client; models are small, freshly initialised CNNs (training is not needed to reach the checks).
"""

from __future__ import annotations

import datetime as dt
import math
import os

import pytest
import torch
import yaml
from torch import nn

from medbench.models.architectures import build_architecture, count_parameters, register_architecture
from medbench.cli import main as cli_main
from medbench.submission import parse_submission
from test_submission import DATASET, WIDTH, base_data, failed, model_bytes, submit, validate
from test_submission import _endpoint, hub  # noqa: F401  (the loopback Hub fixtures, shared)

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

        path = submit(hub, tmp_path, model_id, weights, {}, edit=edit, mode="404")  # the weights are not needed here
        c = failed(validate(path, registry, real_root), "reserved id")
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


# ----------------------------------------------------------------------------- 3. crashes instead of reports

BUILT_ON: list[str] = []  # devices the test-only "blob" architecture was built on


@register_architecture("test_hostile_blob", ranges={"width": (1, 64), "extra": (0, 10**12)})
def _blob(*, in_channels, num_classes, mean, std, width: int = 16, extra: int = 0) -> nn.Module:
    """smallcnn plus one flat parameter of ``extra`` elements (cheap to describe, huge to allocate)."""
    model = build_architecture("smallcnn", in_channels=in_channels, num_classes=num_classes, mean=mean, std=std,
                               width=width)
    model.blob = nn.Parameter(torch.empty(extra))
    BUILT_ON.append(model.blob.device.type)
    return model


@register_architecture("test_hostile_raises")
def _raises(*, in_channels, num_classes, mean, std, width: int = 16) -> nn.Module:
    raise RuntimeError("a builder bug nobody anticipated")


def test_crafted_inputs_give_report_lines_not_crashes(hub, tmp_path, registry, weights, real_root, capsys):
    deep = write(tmp_path, "Deep2026Yaml.yaml", "id: Deep2026Yaml\nx: " + "[" * 3000 + "]" * 3000 + "\n")
    c = failed(validate_any(deep, registry), "file")
    assert "nest" in c.message  # (libyaml: "exceeded maximum nesting depth"; the guard: "nested deeper")
    one_line_fix(c)

    def kwargs(kw):
        return lambda d: d.update(architecture_kwargs=kw)

    for model_id, kw, expect in (("Neg2026Width", {"width": -5}, "architecture_kwargs.width = -5 is outside"),
                                 ("Huge2026Width", {"width": 10**9}, "architecture_kwargs.width = 1000000000 is outside"),
                                 ("Type2026Width", {"width": "8"}, "architecture_kwargs.width must be an integer"),
                                 ("Bool2026Width", {"width": True}, "architecture_kwargs.width must be an integer"),
                                 ("Extra2026Kwarg", {"width": 8, "evil": 1}, "architecture_kwargs.evil is not")):
        c = failed(validate(submit(hub, tmp_path, model_id, weights, {}, edit=kwargs(kw)), registry, real_root),
                   "architecture builds")
        assert expect in c.message, c.message
        one_line_fix(c)

    # the parameter count is estimated before anything is allocated (4e8 parameters = 1.6 GB)
    BUILT_ON.clear()
    path = submit(hub, tmp_path, "Blob2026Huge", weights, {}, arch="test_hostile_blob", n_params=1000,
                  edit=kwargs({"width": WIDTH, "extra": 400_000_000}))
    report = validate(path, registry, real_root)
    c = failed(report, "parameter count")
    assert "before building" in c.message and "limit" in c.message, c.message
    assert "cpu" not in BUILT_ON, BUILT_ON

    # an exception nobody anticipated (here: inside a builder) is still a report line
    path = submit(hub, tmp_path, "Raise2026Builder", weights, {}, arch="test_hostile_raises", n_params=1000)
    c = failed(validate(path, registry, real_root), "architecture builds")
    assert "RuntimeError" in c.message
    one_line_fix(c)

    # the CLI prints reports, never a traceback, whatever the input
    junk = [deep, write(tmp_path, "Bin2026Junk.yaml", os.urandom(256) + b"\xff\xfe"),
            write(tmp_path, "Empty2026File.yaml", ""), write(tmp_path, "Tag2026Python.yaml",
                                                             "id: !!python/object/apply:os.system ['true']\n"),
            tmp_path / "submissions", tmp_path / "submissions" / "Missing2026File.yaml", path]
    capsys.readouterr()
    for f in junk:
        assert cli_main(["submission", "validate", str(f), "--registry", str(registry),
                         "--data-root", str(real_root)]) == 1
        out = capsys.readouterr()
        assert "Traceback" not in out.out + out.err and "FAIL" in out.out, out


# ----------------------------------------------------------------------------- 4. ambiguous YAML

def test_duplicate_keys_are_refused(tmp_path, registry):
    text = good_text("Dup2026Keys")
    top = text.replace(f"dataset: {DATASET}\n", f"dataset: pneumoniamnist\ndataset: {DATASET}\n")
    nested = text.replace("  optimizer: adam\n", "  optimizer: adam\n  optimizer: sgd\n")
    for name, body, key in (("Dup2026Keys.yaml", top, "'dataset'"), ("Dup2026Keys.yml", nested, "'optimizer'")):
        c = failed(validate_any(write(tmp_path, name, body), registry), "file")
        assert f"duplicate key {key}" in c.message and "line" in c.message, c.message
        one_line_fix(c)


# ----------------------------------------------------------------------------- 5. declared preprocessing

def test_declared_preprocessing_must_match_the_weights(hub, tmp_path, registry, real_root):
    model = build_architecture("smallcnn", in_channels=1, num_classes=2, mean=0.3, std=0.2, width=WIDTH)
    data = model_bytes(model, tmp_path)  # trained with mean 0.3 / std 0.2; the entry declares 0.5 / 0.5
    report = validate(submit(hub, tmp_path, "Norm2026Mismatch", data, {}), registry, real_root)
    c = failed(report, "preprocessing")
    assert "0.3" in c.message and "0.5" in c.message and "preprocessing.mean" in c.message, c.message
    one_line_fix(c)
    assert not any(x.stage == "admission" and x.status == "pass" for x in report.checks)


# ----------------------------------------------------------------------------- 6. loose types

FUTURE = dt.date.today() + dt.timedelta(days=40)


@pytest.mark.parametrize("field, edit", [
    ("recipe.lr", lambda d: d["recipe"].update(lr="0.003")),                 # a quoted number
    ("recipe.lr", lambda d: d["recipe"].update(lr=True)),                    # a boolean read as 1.0
    ("recipe.epochs", lambda d: d["recipe"].update(epochs=6.0)),
    ("recipe.extra_data", lambda d: d["recipe"].update(extra_data=1)),
    ("size", lambda d: d.update(size="28")),
    ("date_added", lambda d: d.update(date_added=FUTURE)),
    ("paper.year", lambda d: d["paper"].update(year=dt.date.today().year + 1)),
    ("recipe.hyperparameters.beta", lambda d: d["recipe"].update(hyperparameters={"beta": math.inf})),
    ("recipe.weight_decay", lambda d: d["recipe"].update(weight_decay=math.nan)),
    ("preprocessing.mean.0", lambda d: d["preprocessing"].update(mean=[math.nan])),
    ("claimed.clean_accuracy", lambda d: d["claimed"].update(clean_accuracy="0.9")),
])
def test_loose_types_are_refused(tmp_path, registry, field, edit):
    d = base_data("Loose2026Types", "lab/x", f"{DATASET}/model.safetensors", "0" * 40, "0" * 64, 1, 1, {})
    edit(d)
    c = failed(validate_any(write(tmp_path, "Loose2026Types.yaml", yaml.safe_dump(d)), registry), "schema")
    assert f"field '{field}'" in c.message, c.message
    one_line_fix(c)


def test_iso_date_strings_and_integers_for_floats_still_parse():
    d = base_data("Fine2026Types", "lab/x", f"{DATASET}/model.safetensors", "0" * 40, "0" * 64, 1, 1, {})
    d["date_added"] = "2026-11-22"
    d["recipe"]["lr"] = 1
    sub = parse_submission(d)
    assert sub.date_added == dt.date(2026, 11, 22) and sub.recipe.lr == 1.0


# ----------------------------------------------------------------------------- 7. text

@pytest.mark.parametrize("field, edit, expect", [
    ("paper.title", lambda d: d["paper"].update(title="Robust \x1b[31mCNN\x1b[0m"), "control character"),
    ("description", lambda d: d.update(description="abc \u202edcba"), "bidirectional"),
    ("paper.venue", lambda d: d["paper"].update(venue="x" * 50_000), "at most"),
    ("paper.authors.0", lambda d: d["paper"].update(authors=["   "]), "blank"),
    ("paper.title", lambda d: d["paper"].update(title=" \u00a0 "), "blank"),
    ("recipe.optimizer", lambda d: d["recipe"].update(optimizer="adam\x07"), "control character"),
    ("recipe.schedule", lambda d: d["recipe"].update(schedule="s" * 10_000), "at most"),
    ("tags.0", lambda d: d.update(tags=["ok\u2066x"]), "bidirectional"),
    ("claimed.threat", lambda d: d["claimed"].update(threat="L" * 500, robust_balanced_accuracy=0.1), "at most"),
])
def test_text_fields_are_limited_and_clean(field, edit, expect):
    d = base_data("Text2026Fields", "lab/x", f"{DATASET}/model.safetensors", "0" * 40, "0" * 64, 1, 1, {})
    edit(d)
    with pytest.raises(Exception) as info:
        parse_submission(d)
    msg = str(info.value)
    assert f"field '{field}'" in msg and expect in msg, msg


def test_text_is_nfc_normalised():
    d = base_data("Nfc2026Text", "lab/x", f"{DATASET}/model.safetensors", "0" * 40, "0" * 64, 1, 1, {})
    d["paper"]["title"] = "Cafe\u0301 robustness"
    d["paper"]["authors"] = ["Zoe\u0308 Author"]
    sub = parse_submission(d)
    assert sub.paper.title == "Caf\u00e9 robustness" and sub.paper.authors == ["Zo\u00eb Author"]


# ----------------------------------------------------------------------------- 9. licence

def test_licence_must_be_an_allowed_spdx_id(hub, tmp_path, registry, weights, real_root):
    for i, (lic, expect) in enumerate((("UNLICENSED", "not an SPDX licence that allows"),
                                       ("CC-BY-ND-4.0", "not an SPDX licence that allows"),
                                       ("apache-2.0", "Apache-2.0"))):
        path = submit(hub, tmp_path, f"Lic2026Case{chr(65 + i)}", weights, {}, edit=lambda d: d.update(license=lic),
                      mode="404")  # a file-only check: no download needed
        c = failed(validate(path, registry, real_root), "licence")
        assert expect in c.message, c.message
        one_line_fix(c)
    report = validate(submit(hub, tmp_path, "Lic2026Mit", weights, {}, edit=lambda d: d.update(license="MIT"), mode="404"),
                      registry, real_root)
    assert not any(c.name == "licence" and c.failed for c in report.checks)


# ----------------------------------------------------------------------------- 10. loopback links

def test_loopback_links_need_the_explicit_test_setting(hub, tmp_path, registry, weights, real_root, monkeypatch):
    monkeypatch.delenv("MEDBENCH_ALLOW_LOOPBACK", raising=False)
    path = submit(hub, tmp_path, "Loop2026Paper", weights, {}, mode="404",  # file-only checks: no download needed
                  edit=lambda d: d["paper"].update(url="http://localhost:8000/paper.pdf"))
    c = failed(validate(path, registry, real_root), "links")
    assert "paper.url" in c.message and "https" in c.fix
    one_line_fix(c)

    def mirror(d):
        d["weights"]["sources"].append({"kind": "mirror", "url": "http://127.0.0.1:9/w.safetensors"})

    c = failed(validate(submit(hub, tmp_path, "Loop2026Mirror", weights, {}, edit=mirror), registry, real_root),
               "schema")
    assert "weights.sources.1" in c.message and "https" in c.message
    monkeypatch.setenv("MEDBENCH_ALLOW_LOOPBACK", "1")  # what the tests' fixture sets for the loopback Hub
    report = validate(submit(hub, tmp_path, "Loop2026Mirror", weights, {}, edit=mirror, mode="404"), registry, real_root)
    assert not any(c.name in ("schema", "links") and c.failed for c in report.checks), report.to_text()


# ----------------------------------------------------------------------------- 11. input-shape probe

def test_3d_model_on_a_2d_dataset_is_named(hub, tmp_path, registry, real_root):
    model = build_architecture("smallcnn", in_channels=1, num_classes=2, mean=0.5, std=0.5, width=WIDTH, dims=3)
    report = validate(submit(hub, tmp_path, "Volume2026OnPlane", model_bytes(model, tmp_path), {},
                             n_params=count_parameters(model),
                             edit=lambda d: d.update(architecture_kwargs={"width": WIDTH, "dims": 3})),
                      registry, real_root)
    c = failed(report, "input and output shape")
    assert "3D" in c.message and "2D" in c.message and "dims" in c.fix, c
    one_line_fix(c)


# ----------------------------------------------------------------------------- 12. non-finite weights

def test_nan_weights_are_named(hub, tmp_path, registry, real_root):
    model = build_architecture("smallcnn", in_channels=1, num_classes=2, mean=0.5, std=0.5, width=WIDTH)
    with torch.no_grad():
        model.net[0].weight[0, 0, 0, 0] = float("nan")
        model.net[-1].bias[0] = float("inf")
    report = validate(submit(hub, tmp_path, "Nan2026Weights", model_bytes(model, tmp_path), {}), registry, real_root)
    c = failed(report, "finite weights")
    assert "NaN" in c.message and "net.0.weight" in c.message, c.message
    one_line_fix(c)
    assert "randomised" not in all_text(report)

