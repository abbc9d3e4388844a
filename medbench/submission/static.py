"""Checks on the submission file alone (no download): schema, identity, licence, links, paths, sizes, claims."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from ..schema.entry import is_loopback_host, loopback_allowed
from .report import Report
from .schema import Submission, SubmissionError, parse_submission

MAX_WEIGHTS_BYTES = 1 << 30  # 1 GiB: CI downloads and evaluates the file on a CPU
MAX_PARAMETERS = 250_000_000
RESERVED_PREFIX = "Baseline_"  # the maintained zoo's reference models only
# SPDX ids whose terms let medbench download, keep and serve the weights (an allowlist: "UNLICENSED",
# "proprietary" or a typo must not pass). No-derivatives licences are left out: converted files are derivatives.
ALLOWED_LICENCES = (
    "Apache-2.0", "MIT", "MIT-0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Zlib", "0BSD", "Unlicense", "BSL-1.0",
    "CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-NC-4.0", "CC-BY-NC-SA-4.0", "CDLA-Permissive-2.0",
    "MPL-2.0", "EUPL-1.2", "LGPL-3.0-only", "LGPL-3.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later",
    "AGPL-3.0-only", "AGPL-3.0-or-later",
)
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_DOTDOT = re.compile(r"(^|[\\/])\.\.([\\/]|$)")
_HOST = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}$")
_URL_FIELDS = ("url",)


def check_static(report: Report, data: Any, path: Path, registry: Path, threat_labels: dict[str, list[str]], *,
                 local: bool = False) -> Submission | None:
    """Run every file-only check into ``report``; return the parsed submission (None if the schema fails).

    ``threat_labels`` maps a dataset to the protocol's threat labels for it (empty: no adversarial track).
    ``local``: the author's check before uploading, which accepts a bundled file next to the YAML.
    """
    _check_paths(report, data)
    try:
        sub = parse_submission(data, path.name)
    except SubmissionError as exc:
        lines = str(exc).splitlines()
        report.add("schema", "schema", False, "\n".join(lines),
                   fix="Correct the fields listed (missing fields must be added, unknown ones removed); "
                       "start from submissions/TEMPLATE.yaml.")
        return None
    report.model_id, report.dataset = sub.id, sub.dataset
    report.add("schema", "schema", True, "all fields valid (ModelEntry + claimed)")
    _check_filename(report, sub, path)
    _check_reserved(report, sub)
    _check_unique(report, sub, registry)
    report.add("metadata", "dataset", True,
               f"{sub.dataset} at {sub.size} px ({sub.task}); the schema checked dataset, size, task and channels")
    _check_licence(report, sub)
    _check_links(report, sub)
    _check_sources(report, sub, local)
    _check_sizes(report, sub)
    _check_claims(report, sub, threat_labels.get(sub.dataset, []))
    return sub


# ----------------------------------------------------------------------------- individual checks

def _walk(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{where}.{k}" if where else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{where}[{i}]")
    elif isinstance(node, str):
        yield where, node


def _unsafe_path(field: str, value: str) -> str | None:
    leaf = field.rsplit(".", 1)[-1]
    if leaf in _URL_FIELDS:
        parts = urlsplit(value)
        return "'..' in the URL path" if _DOTDOT.search(parts.path) else None
    if "\x00" in value:
        return "a NUL character"
    if value.startswith("/"):
        return "an absolute path (leading '/')"
    if _WINDOWS_DRIVE.match(value) or value.startswith("\\\\"):
        return "an absolute Windows path"
    if value.startswith("~/"):
        return "a home-relative path ('~/')"
    if _DOTDOT.search(value):
        return "a '..' path component (path traversal)"
    return None


def _check_paths(report: Report, data: Any) -> None:
    bad = [(f, v, why) for f, v in _walk(data) if (why := _unsafe_path(f, v))]
    if bad:
        detail = "; ".join(f"field '{f}' = {v!r} contains {why}" for f, v, why in bad[:5])
        report.add("metadata", "paths", False, f"unsafe path(s): {detail}",
                   fix="Use plain relative file names inside the repository (e.g. breastmnist/model.safetensors): "
                       "no '..', no leading '/', '~' or drive letters.")
    else:
        report.add("metadata", "paths", True, "no absolute paths or '..' components in any field")


def _check_filename(report: Report, sub: Submission, path: Path) -> None:
    ok = path.stem == sub.id and path.suffix in (".yaml", ".yml")
    report.add("metadata", "file name", ok, f"file {path.name!r}, id {sub.id!r}",
               fix=f"Name the file submissions/{sub.id}.yaml (the file name must be the model id).")


def _check_reserved(report: Report, sub: Submission) -> None:
    # The site labels Baseline_* entries as reference baselines and BE / rBE use one of them as the reference:
    # a pull request must not be able to claim either role.
    reserved = sub.id.startswith(RESERVED_PREFIX)
    report.add("metadata", "reserved id", not reserved,
               f"id {sub.id!r} uses the prefix {RESERVED_PREFIX!r}, which is reserved for the reference models "
               "medbench maintains" if reserved else f"id {sub.id!r} is not a reserved name",
               fix="Use an Author2026Keyword id (first author, year, keyword: Smith2026Trades) and give the paper.")


def _check_unique(report: Report, sub: Submission, registry: Path) -> None:
    from ..zoo import load_registry

    taken = [e.id for e in load_registry(registry).entries if e.dataset == sub.dataset]
    clash = next((t for t in taken if t.lower() == sub.id.lower()), None)
    if clash:
        report.add("metadata", "unique id", False,
                   f"id {sub.id!r} is already taken in the zoo for {sub.dataset} (by {clash!r})",
                   fix="Choose a new id (Author2026Keyword); to update an existing model, open an issue instead.")
    else:
        report.add("metadata", "unique id", True, f"id {sub.id!r} is new for {sub.dataset} ({len(taken)} entries)")


def _check_licence(report: Report, sub: Submission) -> None:
    lic = sub.license
    if lic in ALLOWED_LICENCES:
        report.add("metadata", "licence", True, f"licence {lic!r} allows redistributing the weights")
        return
    same = next((a for a in ALLOWED_LICENCES if a.lower() == lic.strip().lower()), None)
    msg = (f"licence {lic!r} is not written as its SPDX identifier; did you mean {same!r}?" if same else
           f"licence {lic!r} is not an SPDX licence that allows medbench to redistribute the weights")
    report.add("metadata", "licence", False, msg,
               fix=f"Give one of these SPDX identifiers, exactly as written: {', '.join(ALLOWED_LICENCES)}; "
                   "weights under other terms cannot be listed.")


def _check_links(report: Report, sub: Submission) -> None:
    urls = []
    if sub.paper is not None:
        urls.append(("paper.url", sub.paper.url))
    urls += [(f"weights.sources[{i}].url", s.url) for i, s in enumerate(sub.weights.sources) if s.kind == "mirror"]
    bad = [(f, u, why) for f, u in urls if (why := _bad_url(u))]
    if bad:
        report.add("metadata", "links", False, "; ".join(f"{f} = {u!r}: {why}" for f, u, why in bad),
                   fix="Give complete https:// links with a real host name (e.g. https://arxiv.org/abs/2401.01234).")
    else:
        report.add("metadata", "links", True, f"{len(urls)} link(s) well-formed" if urls else "no links to check")


def _bad_url(url: str) -> str | None:
    if any(c.isspace() or c in "<>\"'`{}|\\^" for c in url):
        return "contains spaces or characters not allowed in a URL"
    parts = urlsplit(url)
    host = parts.hostname or ""
    if is_loopback_host(host):
        if loopback_allowed() and parts.scheme in ("http", "https"):
            return None  # the test suite's loopback Hub and mirrors
        return f"host {host!r} is a loopback address, not a public host"
    if parts.scheme != "https":
        return f"scheme {parts.scheme or 'missing'!r}; use https://"
    if not _HOST.match(host):
        return f"host {host or 'missing'!r} is not a domain name"
    return None


def _check_sources(report: Report, sub: Submission, local: bool = False) -> None:
    kinds = [s.kind for s in sub.weights.sources]
    if local and "bundled" in kinds:
        report.add("weights", "sources", True, "local check (--local), so the bundled file is accepted; a pull request "
                   "needs a Hub source: " + ", ".join(s.describe() for s in sub.weights.sources))
        report.notes.append("Local check (--local): before the pull request, upload the file to the Hugging Face "
                            "Hub and replace the bundled source by a hub source (repo_id, filename, revision).")
    elif "bundled" in kinds:
        report.add("weights", "sources", False, "bundled weights are not accepted in a submission",
                   fix="Upload the weights file to the Hugging Face Hub and give a hub source "
                       "(repo_id, filename, revision); pull requests carry no binary files. To check a local "
                       "folder before uploading, run `medbench submission validate <yaml> --local`.")
    elif "hub" not in kinds:
        report.add("weights", "sources", False, "no Hugging Face Hub source",
                   fix="Add a {kind: hub, repo_id, filename, revision} source; mirrors are optional fallbacks.")
    else:
        report.add("weights", "sources", True, ", ".join(s.describe() for s in sub.weights.sources))


def _check_sizes(report: Report, sub: Submission) -> None:
    problems = []
    if sub.weights.size_bytes > MAX_WEIGHTS_BYTES:
        problems.append(f"weights.size_bytes {sub.weights.size_bytes} > {MAX_WEIGHTS_BYTES}")
    if sub.weights.num_parameters > MAX_PARAMETERS:
        problems.append(f"weights.num_parameters {sub.weights.num_parameters} > {MAX_PARAMETERS}")
    # text lengths and list lengths are limited by the schema itself (medbench.schema.text)
    report.add("metadata", "size limits", not problems, "; ".join(problems) or "within limits",
               fix="Use a smaller model: weights above the limits cannot be evaluated by CI on a CPU.")


def _check_claims(report: Report, sub: Submission, labels: list[str]) -> None:
    c = sub.claimed
    if c.robust_balanced_accuracy is None:
        report.add("metadata", "claims", True, "clean numbers claimed (no robust claim)")
        return
    problems = []
    if c.threat not in labels:
        known = ", ".join(labels) if labels else f"none ({sub.dataset} has no adversarial track)"
        problems.append(f"claimed.threat {c.threat!r} is not a protocol threat for {sub.dataset} (known: {known})")
    if c.robust_balanced_accuracy > c.clean_balanced_accuracy:
        problems.append(f"claimed robust balanced accuracy {c.robust_balanced_accuracy:.4f} is higher than the claimed "
                        f"clean balanced accuracy {c.clean_balanced_accuracy:.4f}; robust accuracy cannot exceed clean "
                        "accuracy (a point counts as robust only if it is classified correctly)")
    report.add("metadata", "claims", not problems, "; ".join(problems) or
               f"robust claim under {c.threat} is consistent with the clean claim",
               fix="Report numbers measured with `medbench evaluate` under the protocol's threats "
                   "(robust balanced accuracy <= clean balanced accuracy).")
