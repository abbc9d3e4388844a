"""Weights and model checks: reachable, sha256 and size, safetensors, architecture builds, strict load."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..errors import MedbenchError
from ..data import get_spec
from ..schema.entry import ModelEntry
from ..models.weights import WeightsError, load_state_strict, read_safetensors
from ..zoo import WeightsUnavailableError, build_model, fetch_weights
from ..zoo.loader import declared_normalisation, estimate_model_parameters, normalisation_mismatch
from .report import Report


def load_checked_model(report: Report, entry: ModelEntry, *, folder: Path | None = None,
                       data_root: str | Path | None = None) -> nn.Module | None:
    """Check the architecture, fetch, verify and load the entry's weights, recording each step.

    The parameter count is estimated on the ``meta`` device before anything is downloaded or allocated:
    a model above the hard cap, or larger than it declares, is never built. An ONNX entry goes through
    :func:`medbench.submission.onnx_model.load_checked_onnx` (``data_root``: its onnxruntime comparison).
    ``folder``: where bundled (local) files live. Returns the model (eval mode) or None.
    """
    if entry.is_onnx:
        from .onnx_model import load_checked_onnx

        return load_checked_onnx(report, entry, folder=folder, data_root=data_root)
    n = _check_architecture(report, entry)
    if n is None:
        report.skip("weights", "download", "skipped: fix the architecture or its size first (nothing was downloaded)")
        return None
    path = fetch_reported(report, entry, folder)
    if path is None:
        return None
    try:
        state = read_safetensors(path)
    except WeightsError as exc:
        report.add("weights", "safetensors format", False, str(exc).replace(str(path), "the weights file"),
                   fix="Save the weights with safetensors.torch.save_file(model.state_dict(), 'model.safetensors'); "
                       "medbench never unpickles files.")
        return None
    report.add("weights", "safetensors format", True, f"{len(state)} tensors")
    # NaN/inf weights make every later check misfire (NaN logits look "non-deterministic"): name the cause.
    bad = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    report.add("weights", "finite weights", not bad,
               f"{len(bad)} tensor(s) contain NaN or infinite values (e.g. {', '.join(bad[:3])})" if bad
               else "every tensor is finite",
               fix="Save the weights of a checkpoint whose values are all finite (a diverged run or an altered file "
                   "has NaN/inf); check with torch.isfinite before uploading.")
    if bad:
        return None
    try:
        model = build_model(entry)
    except Exception as exc:  # noqa: BLE001 - the estimate built it on meta; a real build may still fail
        report.add("model", "architecture builds", False, f"building on the CPU failed: {_describe(exc)}",
                   fix=BUILD_FIX)
        return None
    declared = declared_normalisation(model)  # the entry's preprocessing, before loading overwrites it
    try:
        load_state_strict(model, state, source="the weights")
    except WeightsError as exc:
        report.add("model", "strict load", False, str(exc) + _channel_hint(model, state, entry),
                   fix="Build the model for the dataset's channels and classes with the entry's architecture and "
                       "architecture_kwargs, and save its complete state dict (strict loading, no missing keys).")
        return None
    report.add("model", "strict load", True, "every tensor matches the architecture (strict=True)")
    why = normalisation_mismatch(declared, state)
    pre = entry.preprocessing
    report.add("model", "preprocessing", why is None,
               why or f"the weights' normalisation equals preprocessing (mean {pre.mean}, std {pre.std})",
               fix="Set preprocessing.mean and preprocessing.std to the values the model was trained with (the "
                   "Normalize buffers saved in the weights); the model uses the saved ones.")
    if why is not None:
        return None
    if n != entry.weights.num_parameters:
        return None
    return model.eval()


BUILD_FIX = ("Use an architecture registered in medbench.models with keyword arguments its builder takes, "
             "within their ranges; a new architecture is added by a separate pull request first.")


def _check_architecture(report: Report, entry: ModelEntry) -> int | None:
    """'architecture builds' and 'parameter count' from a meta-device build; the count, or None to stop here."""
    from .static import MAX_PARAMETERS

    try:
        n = estimate_model_parameters(entry)
    except Exception as exc:  # noqa: BLE001 - a builder may raise anything; the report must say what
        report.add("model", "architecture builds", False, _describe(exc), fix=BUILD_FIX)
        return None
    report.add("model", "architecture builds", True, f"{entry.architecture} {entry.architecture_kwargs or ''}".strip())
    declared = entry.weights.num_parameters
    msg = (f"the built model has {n} parameters (estimated before building, on the meta device); "
           f"the entry says {declared}")
    if n > MAX_PARAMETERS:
        report.add("model", "parameter count", False, f"{msg}; above the limit of {MAX_PARAMETERS} parameters",
                   fix="Choose architecture_kwargs that give a model below the limit (CI evaluates it on a CPU).")
        return None
    report.add("model", "parameter count", n == declared, msg,
               fix="Set weights.num_parameters to the built model's count (sum of p.numel()), "
                   "or fix architecture_kwargs.")
    # A model larger than it declares is not allocated (the declared size passed the limits; this one did not).
    return n if n <= declared else None


def _describe(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, (MedbenchError, ValueError)) else f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 500 else text[:500] + "..."


def fetch_reported(report: Report, entry: ModelEntry, folder: Path | None) -> Path | None:
    """Fetch ``entry``'s pinned weights file (safetensors or ONNX), recording in ``report`` where it came from and
    that its sha256 and size match; None (with every source's failure recorded) when no source served it."""
    try:
        path = fetch_weights(entry.weights, folder=folder, label=f"{entry.id} ({entry.dataset})")
    except WeightsUnavailableError as exc:
        _report_fetch_failure(report, entry, exc)
        return None
    report.add("weights", "reachable", True, f"downloaded from {entry.weights.sources[0].describe()}")
    report.add("weights", "sha256 and size", True,
               f"sha256 {entry.weights.sha256[:16]}... and {entry.weights.size_bytes} bytes match")
    return path


def _report_fetch_failure(report: Report, entry: ModelEntry, exc: WeightsUnavailableError) -> None:
    sources = {s.describe(): s for s in entry.weights.sources}
    reasons = "; ".join(f"{a.source}: {a.reason}{_sniff(sources.get(a.source), a.reason)}" for a in exc.attempts)
    # huggingface_hub itself refuses a file whose size differs from the Hub's metadata ("consistency check")
    served = [a for a in exc.attempts if a.mismatch or "Consistency check failed" in a.reason]
    if not served:
        report.add("weights", "reachable", False, f"no source could be downloaded: {reasons}",
                   fix="Make the Hub repository public, check repo_id, filename and the full 40-hex commit revision "
                       "(copy it from the file's history on the Hub).")
        return
    report.add("weights", "reachable", True, f"{len(served)} source(s) served a file")
    text = reasons
    fix = ("Compute the pins from the file you uploaded: `sha256sum model.safetensors` and "
           "`stat -c %s model.safetensors`, and make sure the revision is the commit holding that file.")
    if "HTML" in text:
        fix = "The source serves an HTML page instead of the weights: give a direct download link of the file. " + fix
    elif size := re.search(r"got (\d+) bytes, expected (\d+)|should be of size (\d+) but has size (\d+)", text):
        got, want = (int(size[1]), int(size[2])) if size[1] else (int(size[4]), int(size[3]))
        if got < want:
            fix = f"The served file is shorter than declared ({got} < {want} bytes; truncated upload?): " \
                  "re-upload the complete file. " + fix
    report.add("weights", "sha256 and size", False, f"the served file is not the one pinned by the entry: {reasons}",
               fix=fix)


def _sniff(source, reason: str) -> str:
    """For a Hub file that huggingface_hub refused, say what the first bytes served are (HTML, pickle)."""
    if source is None or source.kind != "hub" or "Consistency check failed" not in reason:
        return ""
    import urllib.request

    from huggingface_hub import hf_hub_url

    from ..models.weights import PICKLE_MAGIC
    from ..zoo.sources import hub_endpoint

    url = hf_hub_url(source.repo_id, source.filename, revision=source.revision, endpoint=hub_endpoint())
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=0-63"}), timeout=30) as r:
            head = r.read(64)
    except OSError:
        return ""
    if head.lstrip()[:1] == b"<":
        return " (the Hub serves an HTML page, not weights)"
    if head.startswith(PICKLE_MAGIC):
        return " (the Hub serves a pickle / torch.save file)"
    return ""


def _channel_hint(model: nn.Module, state: dict, entry: ModelEntry) -> str:
    """Name a first-layer input-channel mismatch explicitly (the most common cause of a failed load)."""
    n_channels = get_spec(entry.dataset).n_channels
    own = model.state_dict()
    for key, t in own.items():
        if t.ndim in (4, 5) and key in state and state[key].ndim == t.ndim:
            if t.shape[1] == n_channels and state[key].shape[1] != n_channels:
                return (f". Wrong input channels: the weights' input layer ({key}) expects "
                        f"{state[key].shape[1]} channel(s) but {entry.dataset} images have {n_channels}")
            break
    return ""
