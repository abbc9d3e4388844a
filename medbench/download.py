"""Downloading MedMNIST ``.npz`` files: streamed, MD5-checked against ``medmnist.INFO``, atomic.

The file is written to ``<name>.npz.part`` while its MD5 is computed, and moved into place only when
the MD5 matches the official one, so an interrupted or corrupted download never leaves a file that
looks valid, and an existing good file is never replaced by a bad one. No torchvision: plain
``urllib`` with a progress bar. ``MEDBENCH_DATA_MIRROR`` (or ``mirror=``) points at a folder URL
that holds the files under medmnist's names (``breastmnist.npz``, ``breastmnist_64.npz``, ...),
for institutional mirrors and offline installs.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from .data import data_root, file_md5, get_spec
from .errors import ChecksumMismatchError, MedbenchError

MIRROR_ENV = "MEDBENCH_DATA_MIRROR"


class DataDownloadError(MedbenchError):
    """The download could not be completed (network, HTTP status, or disk)."""


def source_url(name: str, size: int = 28, mirror: str | None = None) -> str:
    """Where ``name`` at ``size`` is downloaded from: the mirror when set, else medmnist's Zenodo URL."""
    spec = get_spec(name)
    spec.check_size(size)
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV)
    if mirror:
        return mirror.rstrip("/") + "/" + spec.filename(size)
    return spec.urls[size]


def download(name: str, size: int = 28, root: str | os.PathLike | None = None, *, mirror: str | None = None,
             force: bool = False, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download one MedMNIST file into the data root and verify its MD5; returns its path.

    A file already present with the right MD5 is kept (``force=True`` downloads again). On any
    failure the destination is left as it was and the partial file is removed.
    """
    spec = get_spec(name)
    spec.check_size(size)
    folder = data_root(root)
    dest = folder / spec.filename(size)
    expected = spec.md5[size]
    if dest.is_file() and not force and file_md5(dest) == expected:
        return dest
    url = source_url(name, size, mirror)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataDownloadError(f"Cannot create the data folder {folder}: {exc}. Fix: choose a writable --data-root.") from None
    part = dest.with_name(dest.name + ".part")
    md5 = hashlib.md5()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "medbench"})
        with urllib.request.urlopen(request, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}", disable=not progress,
                      leave=False) as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    md5.update(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as exc:
        part.unlink(missing_ok=True)
        raise DataDownloadError(f"Downloading {spec.name} (size {size}) from {url} failed: HTTP {exc.code} {exc.reason}. "
                                f"Fix: check the URL{' and ' + MIRROR_ENV if mirror or os.environ.get(MIRROR_ENV) else ''}, "
                                "or download the file by hand into the data root.") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DataDownloadError(f"Downloading {spec.name} (size {size}) from {url} failed: {reason}. Nothing was "
                                f"written to {dest}. Fix: check the network (or set {MIRROR_ENV} to a mirror), "
                                "then run the command again.") from None
    actual = md5.hexdigest()
    if actual != expected:
        part.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"The file downloaded from {url} has MD5 {actual}, but medmnist lists {expected} for {spec.name} at "
            f"size {size}; it was discarded and {dest} is unchanged. Fix: retry (a truncated transfer), or use the "
            "official source if a mirror served it."
        )
    os.replace(part, dest)
    return dest
