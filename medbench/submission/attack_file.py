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
from pydantic import ValidationError, ValidationInfo, field_validator, model_validator

from ..errors import MedbenchError
from ..schema.base import Strict

__all__ = ["ARRAYS", "MAX_NPZ_BYTES", "ArrayHeader", "AttackArrays", "AttackFileError", "NpzHeaders", "check_size",
           "file_sha256", "read_attack_arrays"]

MAX_NPZ_BYTES = 64 * 1024 * 1024  # 64 MiB: 1,000 float32 images of 3 x 64 x 64 (49 MB) fit uncompressed
ARRAYS = ("indices", "images")
_IMAGE_DTYPES = ("|u1", "<f4")  # uint8, little-endian float32
_MAX_MEMBERS = 16  # entries read before refusing a crowded archive
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


class ArrayHeader(Strict):
    """What an ``.npy`` header declares: shape and dtype (numpy's ``dtype.str``, e.g. ``<f4``)."""

    shape: tuple[int, ...]
    dtype: str


class NpzHeaders(Strict):
    """The headers of a submitted ``.npz``: exactly ``indices`` and ``images`` (any other array is refused).

    Validated with ``context={"image_shape": (C, H, W), "max_examples": n}``.
    """

    indices: ArrayHeader
    images: ArrayHeader

    @field_validator("indices")
    @classmethod
    def _indices(cls, head: ArrayHeader, info: ValidationInfo) -> ArrayHeader:
        if head.dtype != "<i8":
            raise ValueError(f"indices has dtype {np.dtype(head.dtype)}, not int64 (np.int64)")
        n = info.context["max_examples"]
        if len(head.shape) != 1 or not 1 <= head.shape[0] <= n:
            raise ValueError(f"indices has shape {head.shape}; it must be (k,) with 1 <= k <= {n} "
                             "(the threat's attack subset)")
        return head

    @field_validator("images")
    @classmethod
    def _images(cls, head: ArrayHeader, info: ValidationInfo) -> ArrayHeader:
        if head.dtype not in _IMAGE_DTYPES:
            raise ValueError(f"images has dtype {np.dtype(head.dtype)}, not uint8 or float32")
        image_shape = tuple(info.context["image_shape"])
        if head.shape[1:] != image_shape:
            layout = "C x D x H x W" if len(image_shape) == 4 else "C x H x W"
            raise ValueError(f"images has shape {head.shape}, expected (k, {', '.join(map(str, image_shape))}) "
                             f"(k x {layout}, channels first, at the dataset's size)")
        return head

    @model_validator(mode="after")
    def _one_image_per_index(self) -> "NpzHeaders":
        if self.images.shape[0] != self.indices.shape[0]:
            raise ValueError(f"images holds {self.images.shape[0]} image(s) for {self.indices.shape[0]} indices")
        return self


def _headers(path: Path, name: str) -> dict[str, dict]:
    """Array name -> {shape, dtype} from the ``.npy`` headers inside the zip, before any data is read."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise AttackFileError("npz format", f"{name} is not an .npz archive (a zip of .npy arrays; pickles and "
                              "raw files are refused)", _HOW) from None
    with archive:
        members = archive.namelist()
        if len(members) > _MAX_MEMBERS or len(set(members)) != len(members):
            raise AttackFileError("arrays", f"{name} holds {len(members)} entries (or repeated names); it must hold "
                                  "exactly the arrays indices and images", _HOW)
        return {(m[:-4] if m.endswith(".npy") else m): _header(archive, m, name) for m in members}


def _header(archive: zipfile.ZipFile, member: str, name: str) -> dict:
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    key = member[:40]
    try:
        with archive.open(member) as f:
            version = np.lib.format.read_magic(f)
            if version not in readers:
                raise ValueError(f".npy format version {version} (numpy writes 1.0 or 2.0)")
            shape, _, dtype = readers[version](f)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise AttackFileError("npz format", f"{name}: entry {key!r} is not a valid .npy array ({str(exc)[:120]})",
                              _HOW) from None
    if dtype.hasobject:
        raise AttackFileError("no pickles", f"{name}: array {key!r} has dtype {dtype} (Python objects that only "
                              "unpickling could read); medbench never unpickles submitted files",
                              "Save plain numeric arrays: indices as int64, images as uint8 or float32.")
    return {"shape": tuple(int(v) for v in shape), "dtype": dtype.str}


def _describe(err: dict) -> str:
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unexpected array {where!r}"
    if err["type"] == "missing":
        return f"missing array {where!r}"
    return str(err["msg"]).removeprefix("Value error, ")


def _check_headers(heads: dict, name: str, image_shape: tuple[int, ...], max_examples: int) -> None:
    try:
        NpzHeaders.model_validate(heads, context={"image_shape": image_shape, "max_examples": max_examples})
    except ValidationError as exc:
        problems = list(dict.fromkeys(_describe(e) for e in exc.errors()))
        raise AttackFileError("arrays", f"{name}: {'; '.join(problems)}",
                              "Save exactly indices (int64, one test-split position per image) and images (float32 "
                              "in [0, 1] or uint8, channels first at the dataset's size): "
                              "np.savez_compressed(path, indices=idx, images=x_adv).") from None


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
