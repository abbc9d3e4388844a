"""Corrupted-set cache (manifest, verification, regeneration), the benchmark threat, and the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import medbench
from medbench.cli import main as cli_main
from medbench.corruptions import build_corrupted_sets, corrupt, corruption_parameters
from medbench.corruptions.evaluation import run as run_corruptions
from medbench.corruptions.registry import IDENTITY_2D
from medbench.errors import ChecksumMismatchError
from medbench.evaluate import EvalContext, prepare_model
from medbench.protocol import load_protocol

from conftest import need_real, write_fake_medmnist

PROTO = load_protocol()


@pytest.fixture
def fake_breast(tmp_path):
    write_fake_medmnist(tmp_path, "breastmnist", 28, n=(4, 4, 20))
    return tmp_path, medbench.load_dataset("breastmnist", "test", 28, tmp_path, verify=False)


def test_cache_manifest_verify_and_regenerate(fake_breast):
    root, split = fake_breast
    spec = medbench.get_spec("breastmnist")
    params = corruption_parameters(spec, 28, PROTO)
    sets = build_corrupted_sets(spec, 28, split, params, progress=False)
    manifest = json.loads((sets.folder / "manifest.json").read_text())
    assert sets.folder.is_relative_to(medbench.paths.cache_root())  # never the (maybe read-only) data root
    assert set(manifest["files"]) == set(params) and manifest["source_md5"] == split.md5
    loaded = sets.load("speckle_noise")
    assert sorted(loaded) == [1, 2, 3, 4, 5]
    assert torch.equal(loaded[3], corrupt(split.images, spec, "speckle_noise", 3, params["speckle_noise"][2]))

    # a second build reuses the files untouched
    mtime = (sets.folder / "pixelate.npz").stat().st_mtime_ns
    again = build_corrupted_sets(spec, 28, split, params, progress=False)
    assert (again.folder / "pixelate.npz").stat().st_mtime_ns == mtime
    assert again.manifest_sha256 == sets.manifest_sha256
    # the manifest's hash names its content, not when it was written: a cache built elsewhere, later, with the
    # same files hashes the same; another file hash changes it
    mpath = sets.folder / "manifest.json"
    original, before = mpath.read_text(), sets.manifest_sha256
    moved = json.loads(original)
    moved["updated_at"] = "1999-01-01T00:00:00+00:00"
    mpath.write_text(json.dumps(moved, indent=4))
    assert sets.manifest_sha256 == before
    moved["files"]["pixelate"]["sha256"] = "0" * 64
    mpath.write_text(json.dumps(moved))
    assert sets.manifest_sha256 != before
    mpath.write_text(original)

    # tampering is caught on load, and a rebuild regenerates the file
    path = sets.folder / "pixelate.npz"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="sha256"):
        sets.load("pixelate")
    with pytest.warns(UserWarning, match="regenerating"):
        fixed = build_corrupted_sets(spec, 28, split, params, progress=False)
    assert fixed.load("pixelate")[1].shape == split.images.shape


def test_cache_key_follows_parameters(fake_breast):
    root, split = fake_breast
    spec = medbench.get_spec("breastmnist")
    params = corruption_parameters(spec, 28, PROTO.derive(**{"corruptions.include": ["pixelate"]}))
    other = {"pixelate": [{"factor": 0.9}] * 5}
    a = build_corrupted_sets(spec, 28, split, params, progress=False)
    b = build_corrupted_sets(spec, 28, split, other, progress=False)
    assert a.folder != b.folder


def _identity_protocol(names):
    return PROTO.derive(**{"corruptions.include": names,
                           "corruptions.parameters": {n: [IDENTITY_2D[n]] * 5 for n in names}})


@pytest.mark.realdata
def test_identity_corruption_gives_clean_balanced_accuracy(real_root, breast_model):
    names = ["pixelate", "speckle_noise", "brightness_up", "contrast_down", "motion_blur"]
    res = medbench.benchmark(breast_model, "breastmnist", threats=("corruptions",), data_root=real_root,
                             protocol=_identity_protocol(names), checks=False, progress=False)
    clean = res.clean.balanced_accuracy
    assert len(res.corruptions.cells) == 25
    for cell in res.corruptions.cells:
        assert cell.balanced_accuracy == pytest.approx(clean, abs=1e-12), cell
    assert res.corruptions.relative_robustness == pytest.approx(1.0)


@pytest.mark.realdata
def test_corruption_threat_fills_the_result(real_root, breast_model, tmp_path):
    res = medbench.benchmark(breast_model, "breastmnist", threats=("corruptions",), data_root=real_root,
                             checks=False, progress=False, out=tmp_path / "r.json")
    c = res.corruptions
    names = list(corruption_parameters(medbench.get_spec("breastmnist"), 28, PROTO))
    assert c.suite == "medmnist-c" and len(c.cells) == 5 * len(names)
    assert list(c.per_corruption) == names and list(c.per_severity) == ["1", "2", "3", "4", "5"]
    assert c.balanced_accuracy == pytest.approx(np.mean([x.balanced_accuracy for x in c.cells]))
    assert c.per_severity["1"] >= c.per_severity["5"] - 0.05  # harder corruptions do not help
    assert c.relative_robustness == pytest.approx(c.balanced_accuracy / res.clean.balanced_accuracy)
    assert c.parameters_sha256 and c.cache_manifest_sha256 and c.be is None
    assert c.be_rbe_note == "no reference result was given (the reference is Baseline_ResNet8_ERM)"
    # against itself as the (pinned) reference, BE and rBE are exactly 1 wherever defined
    pinned = PROTO.derive(**{"corruptions.reference_models": {"breastmnist": "Small"}})
    ref = medbench.benchmark(breast_model, "breastmnist", threats=("corruptions",), data_root=real_root,
                             checks=False, progress=False, protocol=pinned, model_id="Small", out=tmp_path / "s.json")
    again = medbench.benchmark(breast_model, "breastmnist", threats=("corruptions",), data_root=real_root,
                               checks=False, progress=False, protocol=pinned, reference=tmp_path / "s.json")
    assert again.corruptions.be == pytest.approx(1.0) and again.corruptions.rbe == pytest.approx(1.0)
    assert again.corruptions.reference_model == "Small" and ref.corruptions.cache_manifest_sha256 == c.cache_manifest_sha256
    rel = again.corruptions.relative_errors
    assert [r.corruption for r in rel] == names  # every corruption, defined or not
    assert again.corruptions.rbe_defined + again.corruptions.rbe_undefined == len(names)
    for r in rel:
        assert (r.rbe is None) == (r.reference_gap < 0.25), r
        assert r.rbe is None or r.rbe == pytest.approx(1.0)
        assert (r.undefined is None) == (r.rbe is not None and r.be is not None)
    assert again.corruptions.cache_manifest_sha256 == c.cache_manifest_sha256


REAL_SLICE = {False: 32, True: 16}  # real test images (2D, 3D) per file: every dataset and corruption in CI time


@pytest.mark.realdata
@pytest.mark.slow
def test_every_real_dataset_builds_verifies_and_evaluates(real_root, monkeypatch, tmp_path):
    """All files in the shared data folder: every corrupted set builds on real test images, verifies, and is
    evaluated by the corruptions threat runner (the one ``benchmark`` runs), which reuses the built cache."""
    monkeypatch.setenv("MEDBENCH_CACHE", str(tmp_path))  # sets of a slice never meet the whole split's
    for path in sorted(real_root.glob("*.npz")):
        name, _, size = path.stem.partition("_")
        size = int(size or 28)
        spec = medbench.get_spec(name)
        whole = medbench.load_dataset(name, "test", size, real_root)
        n = REAL_SLICE[spec.is_3d]
        split = dataclasses.replace(whole, images=whole.images[:n], labels=whole.labels[:n])
        proto = PROTO
        if size > 28:  # the 64-px volumes: one corruption keeps this within the CI budget
            proto = PROTO.derive(**{"corruptions.include": ["brightness_up"]})
        params = corruption_parameters(spec, size, proto)
        # (how fast they build is a benchmark, bench/corruptions.py, not a timed test)
        sets = build_corrupted_sets(spec, size, split, params, progress=False)
        assert sorted(sets.corruptions) == sorted(params)
        for c in sets.corruptions:
            assert sets.load(c)[5].shape == split.images.shape
        torch.manual_seed(0)  # a linear model: this checks the pipeline, not a network (3D CNNs cost minutes here)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(spec.input_shape(size))),
                                                                        spec.num_classes))
        ctx = EvalContext(model=prepare_model(model, spec, size, torch.device("cpu")), spec=spec, split=split,
                          size=size, device=torch.device("cpu"), batch_size=16, seed=0, protocol=proto,
                          data_root=real_root, progress=False)
        res = run_corruptions(ctx)["corruptions"]
        assert res.cache_manifest_sha256 == sets.manifest_sha256
        assert len(res.cells) == 5 * len(params) and list(res.per_corruption) == list(params)
        assert all(0.0 <= c.balanced_accuracy <= 1.0 for c in res.cells)


def test_cli_list_build_show(fake_breast, tmp_path, capsys):
    root, _ = fake_breast
    assert cli_main(["corruptions", "list", "breastmnist"]) == 0
    assert "speckle_noise" in capsys.readouterr().out
    # the fake file's MD5 differs from medmnist's, so the CLI refuses it with a clear message
    assert cli_main(["corruptions", "build", "breastmnist", "--data-root", str(root)]) == 1
    assert "Checksum mismatch" in capsys.readouterr().err


@pytest.mark.realdata
def test_cli_build_and_show_png(real_root, tmp_path, capsys):
    need_real(real_root, "retinamnist.npz")
    assert cli_main(["corruptions", "build", "retinamnist", "--only", "pixelate,motion_blur",
                     "--data-root", str(real_root)]) == 0
    assert "manifest sha256" in capsys.readouterr().out
    out = tmp_path / "grid.png"
    assert cli_main(["corruptions", "show", "retinamnist", "--out", str(out), "--data-root", str(real_root)]) == 0
    from PIL import Image

    with Image.open(out) as im:
        assert im.size[0] > 300 and im.size[1] > 300
