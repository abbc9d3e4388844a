"""MedMNIST access: dataset specs from ``medmnist.INFO``, loading splits as uint8 tensors, MD5 checks.

Images are read straight from medmnist's ``.npz`` files (no per-image PIL pipeline): a split is a
uint8 tensor ``N x C x H x W`` (2D) or ``N x 1 x D x H x W`` (3D) and integer labels ``N`` (``N x 14``
for the multi-label ChestMNIST). Models receive ``images.float() / 255`` per batch.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.utils.data
from medmnist.info import INFO

from .errors import ChecksumMismatchError, DataFileMissingError, UnknownDatasetError, UnsupportedSizeError
from .paths import data_root

Task = Literal["multi-class", "binary-class", "multi-label, binary-class", "ordinal-regression"]
SPLITS = ("train", "val", "test")
SIZES_2D = (28, 64, 128, 224)
SIZES_3D = (28, 64)


@dataclass(frozen=True)
class DatasetSpec:
    """Everything medbench needs to know about one MedMNIST dataset, built from ``medmnist.INFO``."""

    name: str
    python_class: str
    task: Task
    class_names: tuple[str, ...]
    n_channels: int
    is_3d: bool
    n_samples: dict[str, int] = field(hash=False)
    license: str
    md5: dict[int, str] = field(hash=False)
    urls: dict[int, str] = field(hash=False)
    modality: str = ""  # as listed in the MedMNIST v2 paper (``MODALITY``)

    @property
    def num_classes(self) -> int:
        """Number of model outputs: classes, or labels for the multi-label task."""
        return len(self.class_names)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(sorted(self.md5))

    @property
    def is_multilabel(self) -> bool:
        return self.task == "multi-label, binary-class"

    @property
    def dims(self) -> int:
        return 3 if self.is_3d else 2

    def filename(self, size: int = 28) -> str:
        """medmnist's file name for this dataset at ``size`` (``breastmnist.npz``, ``breastmnist_64.npz``)."""
        self.check_size(size)
        return f"{self.name}.npz" if size == 28 else f"{self.name}_{size}.npz"

    def input_shape(self, size: int = 28) -> tuple[int, ...]:
        """Shape of one model input (without the batch dimension)."""
        self.check_size(size)
        return (self.n_channels, size, size, size) if self.is_3d else (self.n_channels, size, size)

    def check_size(self, size: int) -> None:
        if size not in self.md5:
            raise UnsupportedSizeError(
                f"{self.name} is not available at size {size!r}; available sizes: "
                f"{', '.join(map(str, self.sizes))}. Pass one of these as size=... (or --size)."
            )


# Modalities as listed in the MedMNIST v2 paper (Yang et al., Scientific Data 2023, Table 1): medmnist.INFO
# does not hold them as a field.
MODALITY = {
    "pathmnist": "Colon pathology",
    "chestmnist": "Chest X-ray",
    "dermamnist": "Dermatoscope",
    "octmnist": "Retinal OCT",
    "pneumoniamnist": "Chest X-ray",
    "retinamnist": "Fundus camera",
    "breastmnist": "Breast ultrasound",
    "bloodmnist": "Blood cell microscope",
    "tissuemnist": "Kidney cortex microscope",
    "organamnist": "Abdominal CT",
    "organcmnist": "Abdominal CT",
    "organsmnist": "Abdominal CT",
    "organmnist3d": "Abdominal CT",
    "nodulemnist3d": "Chest CT",
    "adrenalmnist3d": "Shape from abdominal CT",
    "fracturemnist3d": "Chest CT",
    "vesselmnist3d": "Shape from brain MRA",
    "synapsemnist3d": "Electron microscope",
}


def _spec_from_info(name: str, info: dict) -> DatasetSpec:
    md5, urls = {}, {}
    for key, value in info.items():
        if key == "MD5":
            md5[28] = value
        elif key.startswith("MD5_"):
            md5[int(key[4:])] = value
        elif key == "url":
            urls[28] = value
        elif key.startswith("url_"):
            urls[int(key[4:])] = value
    labels = info["label"]
    return DatasetSpec(
        name=name,
        python_class=info["python_class"],
        task=info["task"],
        class_names=tuple(labels[str(i)] for i in range(len(labels))),
        n_channels=int(info["n_channels"]),
        is_3d=name.endswith("3d"),
        n_samples=dict(info["n_samples"]),
        license=info["license"],
        md5=md5,
        urls=urls,
        modality=MODALITY.get(name, ""),
    )


DATASETS: dict[str, DatasetSpec] = {name: _spec_from_info(name, info) for name, info in INFO.items()}


def dataset_names(kind: Literal["all", "2d", "3d"] = "all") -> list[str]:
    """Names of the MedMNIST datasets, in medmnist's order."""
    return [n for n, s in DATASETS.items() if kind == "all" or (kind == "3d") == s.is_3d]


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name`` (case-insensitive); a clear error listing valid names otherwise."""
    key = str(name).lower().strip()
    if key in DATASETS:
        return DATASETS[key]
    close = difflib.get_close_matches(key, DATASETS, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownDatasetError(
        f"Unknown MedMNIST dataset {name!r}.{hint} Valid names: {', '.join(DATASETS)}."
    )


def dataset_path(name: str, size: int = 28, root: str | os.PathLike | None = None) -> Path:
    """Where the ``.npz`` file of ``name`` at ``size`` lives (or would live) under the data root."""
    spec = get_spec(name)
    return data_root(root) / spec.filename(size)


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=64)
def _md5_cached(path: str, mtime_ns: int, file_size: int) -> str:
    return md5sum(path)


def file_md5(path: str | os.PathLike) -> str:
    """MD5 of a file, memoised on (path, mtime, size) so repeated loads do not re-hash."""
    st = os.stat(path)
    return _md5_cached(str(path), st.st_mtime_ns, st.st_size)


def _download_command(spec: DatasetSpec, size: int, root: Path) -> str:
    size_arg = "" if size == 28 else f" --size {size}"
    return f"medbench data download {spec.name}{size_arg} --data-root {root}"


def verify_file(name: str, size: int = 28, root: str | os.PathLike | None = None) -> Path:
    """Check that the file of ``name``/``size`` exists and matches medmnist's official MD5; return its path."""
    spec = get_spec(name)
    path = dataset_path(name, size, root)
    if not path.is_file():
        raise DataFileMissingError(
            f"MedMNIST file for {spec.name} (size {size}) not found: looked for {path}. "
            f"Fix: run `{_download_command(spec, size, path.parent)}`, or download "
            f"{spec.urls.get(size, 'it from https://zenodo.org/records/10519652')} into {path.parent}, "
            f"or point MEDBENCH_DATA (or root=/--data-root) at the folder that holds {path.name}."
        )
    actual = file_md5(path)
    expected = spec.md5[size]
    if actual != expected:
        raise ChecksumMismatchError(
            f"Checksum mismatch for {path}: MD5 is {actual}, but medmnist {INFO_VERSION} lists {expected} "
            f"for {spec.name} at size {size}. The file is corrupt, truncated or a different release. "
            f"Fix: delete it and run `{_download_command(spec, size, path.parent)}`."
        )
    return path


def _medmnist_version() -> str:
    from importlib.metadata import version

    return version("medmnist")


INFO_VERSION = _medmnist_version()


@dataclass
class Split:
    """One split of a dataset: uint8 images as a tensor, integer labels as a NumPy array."""

    spec: DatasetSpec
    split: str
    size: int
    images: torch.Tensor  # uint8, N x C x H x W or N x C x D x H x W
    labels: np.ndarray  # int64, (N,) or (N, L) for multi-label
    path: Path
    md5: str

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __iter__(self):  # allows ``images, labels = load_dataset(...)``
        yield self.images
        yield self.labels

    def as_float(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The model-ready view: float32 images in [0, 1] and int64 label tensor (the whole split in memory)."""
        return self.images.float().div_(255.0), torch.from_numpy(self.labels)

    def loader(self, batch_size: int = 128, *, shuffle: bool | None = None, **kwargs) -> "torch.utils.data.DataLoader":
        """A DataLoader of ``(float32 images in [0, 1], int64 labels)`` batches, converted per batch.

        ``shuffle`` defaults to True for the train split and False otherwise; ``kwargs`` go to DataLoader.
        """
        from torch.utils.data import DataLoader

        shuffle = self.split == "train" if shuffle is None else shuffle
        return DataLoader(_FloatView(self), batch_size=batch_size, shuffle=shuffle, **kwargs)


class _FloatView(torch.utils.data.Dataset):
    """Per-item float view of a Split: ``(image / 255 as float32, label as int64 tensor)``."""

    def __init__(self, split: Split):
        self.images, self.labels = split.images, torch.from_numpy(split.labels)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i].float() / 255.0, self.labels[i]


def data_loader(name: str, split: str = "train", size: int = 28, root: str | os.PathLike | None = None, *,
                batch_size: int = 128, shuffle: bool | None = None, **kwargs) -> "torch.utils.data.DataLoader":
    """A DataLoader over one split: ``(float32 images in [0, 1], int64 labels)`` batches, the model contract.

    >>> for x, y in medbench.data_loader("breastmnist", "train", batch_size=64): ...
    """
    return load_dataset(name, split, size, root).loader(batch_size, shuffle=shuffle, **kwargs)


def to_model_layout(images: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """medmnist's array layout (N,H,W), (N,H,W,3) or (N,D,H,W) to channels-first (N,C,...)."""
    if images.ndim == 4 and not spec.is_3d:  # RGB: N,H,W,C
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    return images[:, None]


def load_dataset(
    name: str,
    split: str = "test",
    size: int = 28,
    root: str | os.PathLike | None = None,
    *,
    verify: bool = True,
) -> Split:
    """Load one split of a MedMNIST dataset as uint8 images (channels first) and integer labels.

    >>> images, labels = medbench.load_dataset("breastmnist", "test")
    """
    spec = get_spec(name)
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r} for {spec.name}; use one of {', '.join(SPLITS)}.")
    spec.check_size(size)
    path = verify_file(name, size, root) if verify else dataset_path(name, size, root)
    if not verify and not path.is_file():
        verify_file(name, size, root)  # raises the helpful missing-file error
    with np.load(path, allow_pickle=False) as npz:
        try:
            images = npz[f"{split}_images"]
            labels = npz[f"{split}_labels"]
        except KeyError as exc:
            raise DataFileMissingError(
                f"{path} has no {exc.args[0]!r} array (keys: {', '.join(npz.files)}); it is not a MedMNIST file. "
                f"Fix: delete it and run `{_download_command(spec, size, path.parent)}`."
            ) from None
    if images.dtype != np.uint8:
        raise ChecksumMismatchError(f"{path}: images are {images.dtype}, expected uint8; not a MedMNIST file.")
    expected_n = spec.n_samples[split]
    if verify and (images.shape[0] != expected_n or labels.shape[0] != expected_n):
        raise ChecksumMismatchError(
            f"{path}: {split} split has {images.shape[0]} images and {labels.shape[0]} labels, "
            f"medmnist lists {expected_n}. Fix: delete the file and download it again."
        )
    if labels.shape[0] != images.shape[0]:
        raise ChecksumMismatchError(f"{path}: {split} has {images.shape[0]} images but {labels.shape[0]} labels.")
    labels = labels.astype(np.int64)
    if not spec.is_multilabel:
        labels = labels.reshape(-1)
    tensor = torch.from_numpy(to_model_layout(images, spec))
    return Split(spec, split, size, tensor, labels, path, file_md5(path) if verify else "")


def available_files(root: str | os.PathLike | None = None) -> list[tuple[str, int, Path]]:
    """(dataset, size, path) for every MedMNIST file present under the data root."""
    folder = data_root(root)
    found = []
    for spec in DATASETS.values():
        for size in spec.sizes:
            path = folder / spec.filename(size)
            if path.is_file():
                found.append((spec.name, size, path))
    return found
