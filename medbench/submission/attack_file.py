"""Reading a submitted attack ``.npz`` without trusting it: size first, then sha256, then array headers,
then the data (``allow_pickle=False``). Each refusal is an :class:`AttackFileError` with what, where, fix.

Limits: the file may have at most :data:`MAX_NPZ_BYTES` bytes; ``indices`` is int64 (k,) and ``images``
k x C x H x W (3D: k x C x D x H x W) at the dataset's shape, with 1 <= k <= the attack subset's size,
so the arrays' headers bound what is decompressed before any data is read.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MedbenchError

__all__ = ["ARRAYS", "MAX_NPZ_BYTES", "AttackArrays", "AttackFileError", "check_size", "file_sha256",
           "read_attack_arrays"]

MAX_NPZ_BYTES = 64 * 1024 * 1024  # 64 MiB: 1,000 float32 images of 3 x 64 x 64 (49 MB) fit uncompressed
ARRAYS = ("indices", "images")
_IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype("<f4"))
_HOW = "Fix: write it with np.savez_compressed(path, indices=..., images=...) (see submissions/attacks/README.md)."


class AttackFileError(MedbenchError, ValueError):
    """A submitted ``.npz`` that is refused as a whole; ``check`` names the check, the message says why."""

    def __init__(self, check: str, message: str, fix: str):
        super().__init__(message)
        self.check, self.fix = check, fix


@dataclass(frozen=True)
class AttackArrays:
    """The submitted examples: test-split positions and float32 images in [0, 1]."""

    indices: np.ndarray  # int64 (k,)
    images: np.ndarray  # float32, k x C x H x W (or k x C x D x H x W)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_size(path: Path, name: str) -> int:
    size = path.stat().st_size
    if size > MAX_NPZ_BYTES:
        raise AttackFileError("size limit", f"{name} is {size:,} bytes; an attack file may have at most "
                              f"{MAX_NPZ_BYTES:,} bytes (64 MiB)",
                              "Submit fewer examples (only the ones that break the model) with np.savez_compressed, "
                              "or uint8 images.")
    if size == 0:
        raise AttackFileError("size limit", f"{name} is empty", _HOW)
    return size


def _headers(path: Path, name: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Array name -> (shape, dtype) from the ``.npy`` headers inside the zip, before any data is read."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise AttackFileError("npz format", f"{name} is not an .npz archive (a zip of .npy arrays; pickles and "
                              "raw files are refused)", _HOW) from None
    with archive:
        keys = [m[:-4] if m.endswith(".npy") else m for m in archive.namelist()]
        _check_names(keys, name)
        return {key: _header(archive, key, name) for key in keys}


def _check_names(keys: list[str], name: str) -> None:
    extra = sorted(set(keys) - set(ARRAYS))
    missing = [a for a in ARRAYS if a not in keys]
    if extra or missing or len(keys) != len(ARRAYS):
        parts = [f"unexpected array(s) {', '.join(repr(e[:40]) for e in extra[:5])}" if extra else "",
                 f"missing {', '.join(missing)}" if missing else "",
                 "a repeated array name" if not extra and not missing else ""]
        raise AttackFileError("arrays", f"{name}: {'; '.join(filter(None, parts))}; it must hold exactly the "
                              "arrays indices and images",
                              "Save only indices and images: np.savez_compressed(path, indices=idx, images=x_adv).")


def _header(archive: zipfile.ZipFile, key: str, name: str) -> tuple[tuple[int, ...], np.dtype]:
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        with archive.open(key + ".npy") as f:
            version = np.lib.format.read_magic(f)
            if version not in readers:
                raise ValueError(f".npy format version {version} (numpy writes 1.0 or 2.0)")
            shape, _, dtype = readers[version](f)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise AttackFileError("npz format", f"{name}: array {key!r} is not a valid .npy array ({str(exc)[:120]})",
                              _HOW) from None
    if dtype.hasobject:
        raise AttackFileError("no pickles", f"{name}: array {key!r} has dtype {dtype} (Python objects that only "
                              "unpickling could read); medbench never unpickles submitted files",
                              "Save plain numeric arrays: indices as int64, images as uint8 or float32.")
    return tuple(shape), dtype


def _check_headers(heads: dict, name: str, image_shape: tuple[int, ...], max_examples: int) -> None:
    (ishape, idtype), (xshape, xdtype) = heads["indices"], heads["images"]
    if idtype != np.dtype("<i8"):
        raise AttackFileError("dtypes", f"{name}: indices has dtype {idtype}, not int64",
                              "Write indices as np.asarray(idx, dtype=np.int64).")
    if xdtype not in _IMAGE_DTYPES:
        raise AttackFileError("dtypes", f"{name}: images has dtype {xdtype}, not uint8 or float32",
                              "Write images as float32 in [0, 1] (x_adv.astype(np.float32)) or uint8 (read as /255).")
    if len(ishape) != 1 or not 1 <= ishape[0] <= max_examples:
        raise AttackFileError("shapes", f"{name}: indices has shape {ishape}; it must be (k,) with 1 <= k <= "
                              f"{max_examples} (the threat's attack subset)",
                              "Give one test-split index per submitted image, each at most once.")
    want = (ishape[0], *image_shape)
    if xshape != want:
        raise AttackFileError("shapes", f"{name}: images has shape {xshape}, expected {want} (k x "
                              f"{'C x D x H x W' if len(image_shape) == 4 else 'C x H x W'}, channels first)",
                              "Store images channels first at the dataset's size, one per index.")


def read_attack_arrays(path: Path, name: str, *, image_shape: tuple[int, ...], max_examples: int) -> AttackArrays:
    """Read ``indices`` and ``images`` (headers checked first, ``allow_pickle=False``); images as float32 in
    [0, 1] (uint8 / 255). Raise :class:`AttackFileError` for anything else, including NaN, inf or values
    outside [0, 1]."""
    _check_headers(_headers(path, name), name, image_shape, max_examples)
    try:
        with np.load(path, allow_pickle=False) as npz:
            indices, images = npz["indices"], npz["images"]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise AttackFileError("npz format", f"{name} could not be read with allow_pickle=False ({str(exc)[:160]})",
                              _HOW) from None
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / np.float32(255)
    else:
        bad = ~np.isfinite(images)
        if bad.any():
            first = int(np.argwhere(bad.reshape(len(images), -1).any(1))[0, 0])
            raise AttackFileError("finite", f"{name}: images holds {int(bad.sum())} NaN or infinite value(s) "
                                  f"(first in image {first})", "Replace them: every pixel must be a number in [0, 1].")
        low, high = float(images.min()), float(images.max())
        if low < 0 or high > 1:
            raise AttackFileError("range [0, 1]", f"{name}: images range over [{low:.6g}, {high:.6g}], outside [0, 1]",
                                  "Clip the adversarial images to [0, 1] (inputs of medbench models are in [0, 1]).")
    return AttackArrays(indices=np.asarray(indices, dtype=np.int64), images=np.ascontiguousarray(images))
