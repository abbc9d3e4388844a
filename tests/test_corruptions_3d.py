"""The 3D suite: every corruption changes every dataset's volumes at every severity, more with severity.

"Changes measurably" (the floors below): over the volumes tested, at least 0.1 % of the voxels
change, every volume changes, and the mean |corrupted - clean| is at least 0.5 % of the clean
volumes' mean intensity. The mean |delta| must grow strictly from severity to severity.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import medbench
from medbench.corruptions import build_corrupted_sets, corrupt, corruption_names, corruption_parameters
from medbench.corruptions import generate
from medbench.corruptions.params import parameter_document
from medbench.corruptions.registry import IDENTITY_3D, SUITES_3D, suite_3d
from medbench.protocol import CURRENT_VERSION, load_protocol

from conftest import need_real, write_fake_medmnist

PROTO = load_protocol()
MIN_CHANGED_FRACTION = 1e-3
MIN_RELATIVE_DELTA = 0.005
# (dataset, size, file, volumes tested): every 3D file the shared data folder may hold
REAL_3D = [("adrenalmnist3d", 28, "adrenalmnist3d.npz", 8), ("adrenalmnist3d", 64, "adrenalmnist3d_64.npz", 2),
           ("vesselmnist3d", 28, "vesselmnist3d.npz", 8)]


def _effects(x: torch.Tensor, dataset: str, size: int) -> dict[str, list[tuple[float, float, bool]]]:
    """{corruption: [(changed fraction, mean |delta|, every volume changed) per severity]}."""
    spec = medbench.get_spec(dataset)
    out = {}
    for name, plist in corruption_parameters(spec, size, PROTO).items():
        rows = []
        for sev, p in enumerate(plist, 1):
            d = (corrupt(x, spec, name, sev, p).double() - x.double()).abs()
            rows.append((float((d > 0).double().mean()), float(d.mean()), bool((d.flatten(1).amax(1) > 0).all())))
        out[name] = rows
    return out


def _assert_measurable_and_growing(x: torch.Tensor, dataset: str, size: int) -> None:
    floor = MIN_RELATIVE_DELTA * float(x.double().mean())
    for name, rows in _effects(x, dataset, size).items():
        for sev, (changed, delta, every) in enumerate(rows, 1):
            assert changed >= MIN_CHANGED_FRACTION, (dataset, size, name, sev, changed)
            assert delta >= floor, (dataset, size, name, sev, delta, floor)
            assert every, (dataset, size, name, sev, "a volume is unchanged")
        deltas = [r[1] for r in rows]
        assert all(b > a for a, b in zip(deltas, deltas[1:])), (dataset, size, name, deltas)


@pytest.mark.realdata
@pytest.mark.parametrize("dataset,size,fname,n", REAL_3D, ids=[f[2] for f in REAL_3D])
def test_every_corruption_changes_the_real_volumes_more_with_severity(real_root, dataset, size, fname, n):
    need_real(real_root, fname)
    x = medbench.load_dataset(dataset, "test", size, real_root).images[:n]
    assert len(corruption_parameters(medbench.get_spec(dataset), size, PROTO)) == 10
    _assert_measurable_and_growing(x, dataset, size)


@pytest.mark.realdata
@pytest.mark.parametrize("dataset,size,fname,n", REAL_3D, ids=[f[2] for f in REAL_3D])
def test_mask_datasets_hold_masks_and_the_dropped_corruptions_do_nothing_there(real_root, dataset, size, fname, n):
    """The reason recorded for leaving gamma and contrast_up out of the mask suite, checked on the real files."""
    need_real(real_root, fname)
    x = medbench.load_dataset(dataset, "test", size, real_root).images
    assert suite_3d(dataset).kind == "mask"
    assert np.flatnonzero(np.bincount(x.numpy().ravel(), minlength=256)).tolist() == [0, 255]
    spec, params = medbench.get_spec(dataset), parameter_document()["medbench-3d"]["parameters"][str(size)]
    dropped = dict(suite_3d(dataset).not_applied)
    assert set(dropped) == {"gamma_up", "gamma_down", "contrast_up"}
    for name in dropped:
        for sev, p in enumerate(params[name]["params"], 1):
            assert torch.equal(corrupt(x[:n], spec, name, sev, p), x[:n]), (name, sev)


def _ct_like(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Continuous-intensity volumes standing in for organ / nodule CT: air, soft tissue with smooth
    texture, a brighter organ and a dense bright spot, with acquisition noise; uint8 N x 1 x S x S x S."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(-1, 1, size, dtype=torch.float64)
    z, y, x = torch.meshgrid(t, t, t, indexing="ij")
    vols = []
    for _ in range(n):
        c = (torch.rand(3, generator=g, dtype=torch.float64) - 0.5) * 0.6
        body = (x ** 2 + y ** 2) < 0.85
        organ = ((x - c[0]) / 0.45) ** 2 + ((y - c[1]) / 0.35) ** 2 + ((z - c[2]) / 0.5) ** 2 < 1
        spot = (x + c[1]) ** 2 + (y - c[2]) ** 2 + (z + c[0]) ** 2 < 0.03
        texture = F.avg_pool3d(torch.rand((1, 1, size, size, size), generator=g, dtype=torch.float64), 5, 1, 2)[0, 0]
        v = 0.05 + body * (0.40 + 0.3 * (texture - 0.5)) + organ * 0.18 + spot * 0.3
        v = v + 0.02 * torch.randn(v.shape, generator=g, dtype=torch.float64)
        vols.append(v.clamp(0, 1))
    return (torch.stack(vols)[:, None] * 255).round().to(torch.uint8)


def test_intensity_suite_acts_on_continuous_volumes():
    dataset = "organmnist3d"  # the same suite as nodule, fracture and synapse
    assert suite_3d(dataset).kind == "intensity"
    x = _ct_like(3, 28)
    assert len(torch.unique(x)) > 100
    _assert_measurable_and_growing(x, dataset, 28)


def test_suites_cover_every_3d_dataset_and_match_the_protocol():
    doc = parameter_document(CURRENT_VERSION)["medbench-3d"]
    assert sorted(d for s in SUITES_3D for d in s.datasets) == sorted(medbench.dataset_names("3d"))
    for s in SUITES_3D:
        entry = doc["suites"][s.kind]
        assert entry["datasets"] == list(s.datasets) and entry["corruptions"] == list(s.corruptions)
        assert len(s.corruptions) == 10 and entry["why"]
        # every corruption of the full list is either in the suite or left out with a reason
        assert set(s.corruptions) | set(entry["not_applied"]) == set(doc["parameters"]["28"])
        assert all(len(reason) > 20 for reason in entry["not_applied"].values())
        for ds in s.datasets:
            assert corruption_names(ds, True) == list(s.corruptions)
            for size in (28, 64):
                assert list(corruption_parameters(medbench.get_spec(ds), size, PROTO)) == list(s.corruptions)
    # the measurement recorded with the parameters shows every corruption acting and growing
    for ds, sizes in doc["measured"].items():
        if ds in ("metric", "volumes"):
            continue
        for size, row in sizes.items():
            assert list(row) == list(suite_3d(ds).corruptions), (ds, size)
            for name, m in row.items():
                assert min(m["changed_fraction"]) >= MIN_CHANGED_FRACTION, (ds, size, name)
                assert all(b > a for a, b in zip(m["mean_abs_delta"], m["mean_abs_delta"][1:])), (ds, size, name)


def test_a_mask_corruption_is_refused_for_an_intensity_dataset_and_vice_versa():
    organ, vessel = medbench.get_spec("organmnist3d"), medbench.get_spec("vesselmnist3d")
    with pytest.raises(ValueError, match="not in the organmnist3d suite"):
        corruption_parameters(organ, 28, PROTO.derive(**{"corruptions.include": ["under_segmentation"]}))
    with pytest.raises(ValueError, match="not a corruption of the medbench-3d suite for vesselmnist3d"):
        corruption_parameters(vessel, 28, PROTO.derive(**{"corruptions.parameters": {"gamma_up": [{"gamma": 2}] * 5}}))


def test_version_1_keeps_its_3d_suite():
    """Results computed under version 1 stay reproducible: every 3D dataset gets the ten original corruptions."""
    v1 = load_protocol("1")
    names = list(corruption_parameters(medbench.get_spec("vesselmnist3d"), 28, v1))
    assert "gamma_up" in names and "under_segmentation" not in names and len(names) == 10


def test_surface_operations_on_a_ball():
    """Under/over-segmentation move a ball's surface by the given depth; boundary noise keeps its size."""
    spec = medbench.get_spec("adrenalmnist3d")
    t = torch.arange(20, dtype=torch.float64) - 9.5
    r = (t[:, None, None] ** 2 + t[None, :, None] ** 2 + t[None, None, :] ** 2).sqrt()
    ball = ((r < 6) * 255).to(torch.uint8)[None, None].repeat(2, 1, 1, 1, 1)
    fg = int((ball[0] > 0).sum())
    shrunk = corrupt(ball, spec, "under_segmentation", 1, {"depth": -1.0})
    grown = corrupt(ball, spec, "over_segmentation", 1, {"depth": 2.0})
    assert bool((shrunk <= ball).all()) and bool((grown >= ball).all())
    assert set(torch.unique(shrunk).tolist()) == set(torch.unique(grown).tolist()) == {0, 255}
    # one layer of a radius-6 ball: the volume drops to about that of a radius-5 ball, two layers grow it to ~radius 8
    assert 0.5 < int((shrunk[0] > 0).sum()) / fg < 0.75
    assert 1.8 < int((grown[0] > 0).sum()) / fg < 2.8
    half = corrupt(ball, spec, "under_segmentation", 1, {"depth": -0.5})
    removed_half, removed_full = int((half[0] != ball[0]).sum()), int((shrunk[0] != ball[0]).sum())
    assert 0.4 < removed_half / removed_full < 0.6
    noisy = corrupt(ball, spec, "boundary_noise", 1, {"flip": 0.3})
    changed = noisy[0] != ball[0]
    assert int(changed.sum()) > 0 and abs(int((noisy[0] > 0).sum()) - fg) < 0.25 * int(changed.sum())
    far = (r - 6).abs() > 1.8  # only voxels next to the surface change
    assert not bool(changed[0][far].any())
    for name in ("under_segmentation", "over_segmentation", "boundary_noise"):
        assert torch.equal(corrupt(ball, spec, name, 1, IDENTITY_3D[name]), ball)


def test_cache_key_changes_when_an_operation_changes(tmp_path, monkeypatch):
    """Same parameters, different operation code: the corrupted sets are regenerated in a new folder."""
    from medbench.corruptions import ops3d

    write_fake_medmnist(tmp_path, "vesselmnist3d", 28, n=(2, 2, 3))
    split = medbench.load_dataset("vesselmnist3d", "test", 28, tmp_path, verify=False)
    spec = medbench.get_spec("vesselmnist3d")
    params = corruption_parameters(spec, 28, PROTO.derive(**{"corruptions.include": ["gaussian_noise"]}))
    a = build_corrupted_sets(spec, 28, split, params, progress=False)
    key_2d = generate.ops_code_sha256(False)
    source = (tmp_path / "ops3d.py")
    text = open(ops3d.__file__).read()
    changed = text.replace('p["sigma"] * noise', 'p["sigma"] * 1.5 * noise')
    assert changed != text
    source.write_text(changed)
    with monkeypatch.context() as m:
        m.setattr(ops3d, "__file__", str(source))
        b = build_corrupted_sets(spec, 28, split, params, progress=False)
        assert a.folder != b.folder and (b.folder / "gaussian_noise.npz").is_file()
        assert json.loads((b.folder / "manifest.json").read_text())["ops_code_sha256"] == generate.ops_code_sha256(True)
        assert generate.ops_code_sha256(False) == key_2d  # a 3D change leaves the 2D caches alone
    assert build_corrupted_sets(spec, 28, split, params, progress=False).folder == a.folder
