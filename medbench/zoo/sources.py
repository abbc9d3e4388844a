"""Getting a weights file from an entry's sources, in order, verified against sha256 and size before use.

- hub: ``huggingface_hub.hf_hub_download`` at the pinned commit, into the standard Hugging Face
  cache; ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_HOME`` / ``HF_HUB_CACHE`` are read at call time.
  A file that fails verification is removed from that cache only if this call put it there.
- mirror: stdlib ``urllib`` into a temporary file, moved into medbench's cache
  (``<cache_root>/weights/<sha256>.<format>``) only once verified.
- bundled: a file next to the entry's YAML inside the installed package.
"""

from __future__ import annotations

import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import MedbenchError
from ..paths import cache_root
from ..schema.entry import BundledSource, HubSource, MirrorSource, Weights
from ..models.weights import PICKLE_MAGIC, sha256sum

TRUE = {"1", "ON", "YES", "TRUE"}
MIRROR_TIMEOUT_S = 30.0


class WeightsUnavailableError(MedbenchError):
    """No source gave a verified file; ``attempts`` lists each source tried and why it failed."""

    def __init__(self, message: str, attempts: list["Attempt"]):
        super().__init__(message)
        self.attempts = attempts


class WeightsHashMismatchError(WeightsUnavailableError):
    """At least one source served a file whose sha256 or size differs from the entry's."""


@dataclass(frozen=True)
class Attempt:
    source: str
    reason: str
    mismatch: bool = False


class _Failed(Exception):
    def __init__(self, reason: str, mismatch: bool = False):
        super().__init__(reason)
        self.mismatch = mismatch


# ----------------------------------------------------------------------------- environment

def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``), read now rather than at import."""
    return (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").upper() in TRUE


def hub_endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def hf_cache_dir() -> Path:
    """The standard Hugging Face Hub cache, resolved like huggingface_hub does, at call time."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def weights_cache_dir() -> Path:
    return cache_root() / "weights"


# ----------------------------------------------------------------------------- verification

def check_file(path: Path, weights: Weights) -> str | None:
    """Why ``path`` is not the expected file (size, then sha256), or None when it is."""
    size = path.stat().st_size
    if size != weights.size_bytes:
        return f"size mismatch: got {size} bytes, expected {weights.size_bytes}{_looks_like(path)}"
    digest = sha256sum(path)
    if digest != weights.sha256:
        return f"sha256 mismatch: got {digest}, expected {weights.sha256}{_looks_like(path)}"
    return None


def _looks_like(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(64)
    if head.lstrip()[:1] == b"<":
        return " (the file is an HTML page, not weights)"
    if head.startswith(PICKLE_MAGIC):
        return " (the file is a pickle / torch.save file)"
    return ""


# ----------------------------------------------------------------------------- sources

def _fetch_bundled(src: BundledSource, weights: Weights, folder: Path | None, local_only: bool) -> Path:
    if folder is None:
        raise _Failed("no registry folder given for a bundled file")
    path = (folder / src.filename).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise _Failed(f"{src.filename} resolves outside {folder}")
    if not path.is_file():
        raise _Failed(f"file missing: {path} (reinstall medbench, or check the entry's filename)")
    reason = check_file(path, weights)
    if reason:
        raise _Failed(f"{reason}; the bundled file {path} was not used", mismatch=True)
    return path


def _fetch_mirror(src: MirrorSource, weights: Weights, folder: Path | None, local_only: bool) -> Path:
    target = weights_cache_dir() / f"{weights.sha256}.{weights.format}"
    if target.is_file() and check_file(target, weights) is None:
        return target
    if local_only:
        raise _Failed("not in medbench's weights cache")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _download(src.url, out, weights.size_bytes)
        reason = check_file(tmp, weights)
        if reason:
            raise _Failed(f"{reason}; the download was discarded, nothing was cached", mismatch=True)
        os.replace(tmp, target)
        return target
    finally:
        tmp.unlink(missing_ok=True)


def _download(url: str, out, expected_size: int) -> None:
    from .. import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"medbench/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=MIRROR_TIMEOUT_S) as response:
            received = 0
            while block := response.read(1 << 20):
                received += len(block)
                if received > expected_size:
                    raise _Failed(f"server sent more than the expected {expected_size} bytes; download stopped",
                                  mismatch=True)
                out.write(block)
            missing = getattr(response, "length", None)  # bytes promised by Content-Length but never sent
            if missing:
                raise _Failed(f"download failed: connection closed after {received} of {received + missing} bytes")
    except urllib.error.HTTPError as exc:
        raise _Failed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _Failed(f"cannot connect: {exc.reason}") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # IncompleteRead, resets, timeouts
        raise _Failed(f"download failed: {type(exc).__name__}: {exc}") from None


def _fetch_hub(src: HubSource, weights: Weights, folder: Path | None, local_only: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    cache, endpoint, offline = hf_cache_dir().resolve(), hub_endpoint(), hub_offline()
    storage = cache / ("models--" + src.repo_id.replace("/", "--"))
    before = _files(storage)
    where = endpoint or "https://huggingface.co"
    try:
        path = Path(hf_hub_download(src.repo_id, src.filename, revision=src.revision, cache_dir=cache,
                                    endpoint=endpoint, local_files_only=offline or local_only))
    except LocalEntryNotFoundError as exc:
        if local_only:
            raise _Failed("not in the Hugging Face cache") from None
        if offline:
            raise _Failed(f"HF_HUB_OFFLINE is set and the file is not in the Hugging Face cache {cache}") from None
        raise _Failed(f"cannot reach the Hub at {where} and the file is not cached ({_cause(exc)})") from None
    except RepositoryNotFoundError:
        raise _Failed(f"repository {src.repo_id} not found at {where}") from None
    except RevisionNotFoundError:
        raise _Failed(f"revision {src.revision} not found in {src.repo_id}") from None
    except EntryNotFoundError:
        raise _Failed(f"{src.filename} not found in {src.repo_id} at {src.revision}") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise _Failed(f"HTTP {status} from {where}") from None
    except Exception as exc:  # consistency checks (truncated download), httpx errors mid-download, ...
        raise _Failed(f"download failed: {type(exc).__name__}: {_first_line(exc)}") from None
    reason = check_file(path, weights)
    if reason and local_only:
        raise _Failed(reason)  # reported by the network pass
    if reason:
        removed = _remove_new(storage, before, path)
        note = ("removed from the Hugging Face cache" if removed else
                f"left untouched at {path} because it was there before; delete it to download again")
        raise _Failed(f"{reason}; the file was not used and {note}", mismatch=True)
    return path


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() or p.is_symlink()} if folder.is_dir() else set()


def _remove_new(storage: Path, before: set[Path], pointer: Path) -> bool:
    """Delete the snapshot pointer and blob this download created; never a file that existed before."""
    if pointer in before or pointer not in _files(storage):
        return False
    blob = pointer.resolve()
    pointer.unlink(missing_ok=True)
    if blob != pointer and blob not in before:
        blob.unlink(missing_ok=True)
    return True


def _cause(exc: BaseException) -> str:
    inner = exc.__cause__ or exc.__context__
    return _first_line(inner or exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_FETCHERS = {"hub": _fetch_hub, "mirror": _fetch_mirror, "bundled": _fetch_bundled}


def fetch_weights(weights: Weights, *, folder: str | os.PathLike | None = None, label: str = "weights") -> Path:
    """The local path of a verified copy of ``weights``: a verified local copy (Hub cache, mirror cache,
    bundled file) if there is one, else each source in order over the network.

    ``folder`` is where bundled files live (the entry's registry folder). Raises
    :class:`WeightsUnavailableError` (or :class:`WeightsHashMismatchError`) listing every attempt.
    """
    base = Path(folder) if folder is not None else None
    for src in weights.sources:  # first a verified local copy from any source: no network when the cache is warm
        try:
            return _FETCHERS[src.kind](src, weights, base, True)
        except _Failed:
            pass
    attempts: list[Attempt] = []
    for src in weights.sources:
        try:
            return _FETCHERS[src.kind](src, weights, base, False)
        except _Failed as exc:
            attempts.append(Attempt(src.describe(), str(exc), exc.mismatch))
    lines = "\n".join(f"  {i}. {a.source}: {a.reason}" for i, a in enumerate(attempts, 1))
    mismatch = any(a.mismatch for a in attempts)
    cls = WeightsHashMismatchError if mismatch else WeightsUnavailableError
    hint = ("A source served a different file than the entry pins: the entry or the source is wrong; "
            "nothing unverified was loaded or cached." if mismatch else
            "Check your connection, HF_ENDPOINT and HF_HUB_OFFLINE, or download the file on a connected machine "
            "with `medbench zoo download` to warm the cache.")
    raise cls(f"No source gave a verified copy of {label} (sha256 {weights.sha256[:16]}...):\n{lines}\n{hint}",
              attempts)


__all__ = ["Attempt", "WeightsHashMismatchError", "WeightsUnavailableError", "check_file", "fetch_weights",
           "hf_cache_dir", "hub_endpoint", "hub_offline", "weights_cache_dir"]
