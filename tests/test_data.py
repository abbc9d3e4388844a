"""Data layer: specs from medmnist.INFO, loading (synthetic and real files), the data root, error paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from medmnist.info import INFO

import medbench
from medbench.data import DATASETS, dataset_names, load_dataset, verify_file
from medbench.errors import ChecksumMismatchError, DataFileMissingError, UnknownDatasetError, UnsupportedSizeError
from medbench.paths import data_root

from conftest import need_real, write_fake_medmnist


def test_specs_cover_all_18_datasets_from_medmnist_info():
    assert set(DATASETS) == set(INFO)
    assert len(dataset_names("2d")) == 12 and len(dataset_names("3d")) == 6
    for name, spec in DATASETS.items():
        info = INFO[name]
        assert spec.task == info["task"]
        assert spec.n_channels == info["n_channels"]
        assert spec.n_samples == info["n_samples"]
        assert spec.license == info["license"]
        assert spec.md5[28] == info["MD5"]
        assert list(spec.class_names) == [info["label"][str(i)] for i in range(len(info["label"]))]
        assert spec.sizes == ((28, 64) if spec.is_3d else (28, 64, 128, 224))
    assert DATASETS["chestmnist"].is_multilabel and DATASETS["chestmnist"].num_classes == 14
    assert DATASETS["adrenalmnist3d"].input_shape(64) == (1, 64, 64, 64)
    assert DATASETS["pathmnist"].input_shape(28) == (3, 28, 28)


@pytest.mark.parametrize(
    "name,size,shape",
    [("breastmnist", 28, (1, 28, 28)), ("dermamnist", 64, (3, 64, 64)),
     ("organmnist3d", 28, (1, 28, 28, 28)), ("chestmnist", 28, (1, 28, 28)),
     ("retinamnist", 28, (3, 28, 28))],
)
def test_load_synthetic_file_all_layouts(tmp_path, name, size, shape):
    path = write_fake_medmnist(tmp_path, name, size, n=(10, 4, 12))
    split = load_dataset(name, "test", size, root=tmp_path, verify=False)
    assert split.images.dtype == torch.uint8 and tuple(split.images.shape) == (12, *shape)
    raw = np.load(path)
    # channels-first, same pixels as the file
    img0 = raw["test_images"][0]
    expected = img0.transpose(2, 0, 1) if img0.ndim == 3 and not DATASETS[name].is_3d else img0[None]
    assert np.array_equal(split.images[0].numpy(), expected)
    labels = split.labels
    assert labels.dtype == np.int64
    if DATASETS[name].is_multilabel:
        assert labels.shape == (12, 14)
    else:
        assert labels.shape == (12,) and np.array_equal(labels, raw["test_labels"].reshape(-1))
    images, labels2 = split  # tuple-style unpacking
    assert images is split.images and labels2 is split.labels


def test_data_root_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDBENCH_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == (tmp_path / "arg").resolve()
    assert data_root() == (tmp_path / "env").resolve()
    monkeypatch.delenv("MEDBENCH_DATA")
    assert str(data_root()).endswith(".medmnist")


def test_unknown_dataset_names_valid_ones():
    with pytest.raises(UnknownDatasetError) as exc:
        medbench.get_spec("breastmnst")
    msg = str(exc.value)
    assert "breastmnst" in msg and "Did you mean breastmnist" in msg and "pathmnist" in msg


def test_missing_file_says_where_and_how(tmp_path):
    with pytest.raises(DataFileMissingError) as exc:
        load_dataset("pneumoniamnist", root=tmp_path)
    msg = str(exc.value)
    assert str(tmp_path / "pneumoniamnist.npz") in msg and "medbench data download pneumoniamnist" in msg


def test_checksum_mismatch_detected(tmp_path):
    write_fake_medmnist(tmp_path, "breastmnist", n=(5, 5, 5))
    with pytest.raises(ChecksumMismatchError) as exc:
        load_dataset("breastmnist", root=tmp_path)
    msg = str(exc.value)
    assert "750601b1f35ba3300ea97c75c52ff8f6" in msg and "delete it" in msg


def test_unsupported_size():
    with pytest.raises(UnsupportedSizeError, match="available sizes: 28, 64"):
        load_dataset("vesselmnist3d", size=128)
    with pytest.raises(UnsupportedSizeError):
        DATASETS["breastmnist"].filename(32)


def test_not_a_medmnist_file(tmp_path):
    np.savez(tmp_path / "breastmnist.npz", foo=np.zeros(3))
    with pytest.raises(DataFileMissingError, match="not a MedMNIST file"):
        load_dataset("breastmnist", root=tmp_path, verify=False)


@pytest.mark.realdata
def test_real_files_load_and_verify(real_root):
    found = [(n, s, p) for n, s, p in medbench.data.available_files(real_root)]
    assert found, "no real files found"
    for name, size, path in found:
        assert verify_file(name, size, real_root) == path
        spec = DATASETS[name]
        for split in ("train", "val", "test"):
            s = load_dataset(name, split, size, root=real_root)
            assert len(s) == spec.n_samples[split] == len(s.labels)
            assert tuple(s.images.shape[1:]) == spec.input_shape(size)
            assert s.labels.min() >= 0 and s.labels.max() < spec.num_classes
            assert s.md5 == spec.md5[size]


@pytest.mark.realdata
def test_real_loader_matches_medmnist_dataset_class(real_root):
    import medmnist

    need_real(real_root, "retinamnist.npz")
    ours = load_dataset("retinamnist", "val", root=real_root)
    theirs = medmnist.RetinaMNIST(split="val", root=str(real_root))
    for i in (0, 7, 119):
        img, target = theirs[i]  # PIL image, array label
        assert np.array_equal(np.asarray(img).transpose(2, 0, 1), ours.images[i].numpy())
        assert int(target[0]) == ours.labels[i]
