"""The protocol pages: every number of ``medbench/protocols/v<N>.yaml`` and its corruption
parameters (``v<N>_corruptions.yaml``), read from those files at build time, never retyped."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from ..protocol import load_protocol
from ..safe_yaml import load_yaml_text


@dataclass
class ParamRow:
    corruption: str
    size: str
    source: str
    severities: list[str]  # one "name value, ..." text per severity
    note: str = ""  # calibration measurement, when recorded


@dataclass
class ProtocolPage:
    version: str
    data: dict[str, Any]
    sha256: str  # as medbench.protocol.Protocol.sha256 (recorded in every result's provenance)
    files: dict[str, bytes]  # file name -> bytes, published beside the page
    corruption_meta: dict[str, Any] = field(default_factory=dict)
    suites: list[tuple[str, str, list[ParamRow]]] = field(default_factory=list)  # (suite, dataset or "", rows)
    other: dict[str, Any] = field(default_factory=dict)  # sections the page does not know: shown raw

    def eps_255(self, eps: float) -> str:
        return f"{eps * 255:.4g}/255"


def versions() -> list[str]:
    """Protocol versions shipped with this medbench (``v<N>.yaml``), oldest first."""
    names = [p.name for p in resources.files("medbench.protocols").iterdir()]
    found = [n[1:-5] for n in names if n.startswith("v") and n.endswith(".yaml") and "_" not in n]
    return sorted(found, key=lambda v: (len(v), v))


def _params(p: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in p.items()) or "–"


def _sizes(keys) -> list[str]:
    return sorted(keys, key=lambda k: int(k) if str(k).isdigit() else 10 ** 9)


def _note(cell: dict) -> str:
    extra = {k: v for k, v in cell.items() if k not in ("source", "params")}
    if not extra:
        return ""
    return "; ".join(f"{k.replace('_', ' ')}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
                     for k, v in extra.items())


def _row(corruption: str, size: str, cell: dict) -> ParamRow:
    return ParamRow(corruption, str(size), cell.get("source", ""), [_params(p) for p in cell["params"]], _note(cell))


def files(version: str) -> dict[str, bytes]:
    """The protocol's files published beside its page: ``v<N>.yaml`` and, when present, ``v<N>_corruptions.yaml``."""
    pkg = resources.files("medbench.protocols")
    out = {f"v{version}.yaml": pkg.joinpath(f"v{version}.yaml").read_bytes()}
    cor = pkg.joinpath(f"v{version}_corruptions.yaml")
    if cor.is_file():
        out[f"v{version}_corruptions.yaml"] = cor.read_bytes()
    return out


def raw_file(name: str) -> bytes:
    """A protocol file shipped with medbench, as published on the site (e.g. ``lite1.yaml``)."""
    return resources.files("medbench.protocols").joinpath(name).read_bytes()


@lru_cache(maxsize=None)  # package files, fixed for the life of the process; parsing them is most of a small build
def load_page(version: str) -> ProtocolPage:
    """The protocol page's contents (shared: treat as read-only)."""
    published = files(version)
    data = load_yaml_text(published[f"v{version}.yaml"].decode("utf-8"), where=f"medbench/protocols/v{version}.yaml")
    page = ProtocolPage(version, data, load_protocol(version).sha256(), published)
    known = {"version", "seed", "sizes", "primary_size", "split", "clean", "adversarial", "curves", "corruptions",
             "changes_from", "changes"}
    page.other = {k: v for k, v in data.items() if k not in known}
    craw = published.get(f"v{version}_corruptions.yaml")
    if craw is not None:
        doc = load_yaml_text(craw.decode("utf-8"), where=f"medbench/protocols/v{version}_corruptions.yaml") or {}
        page.corruption_meta = {k: v for k, v in doc.items() if k not in ("medmnist-c", "medbench-3d")}
        try:
            for dataset, table in (doc.get("medmnist-c") or {}).items():
                rows = [_row(c, s, by_size[s]) for c, by_size in table.items() for s in _sizes(by_size)]
                page.suites.append(("medmnist-c", dataset, rows))
            td = doc.get("medbench-3d") or {}
            if td:
                # version 1: {size: {corruption: cell}}; version 2: per-kind suites over a shared parameter table
                by_size = td.get("parameters", td)
                for kind, suite in (td.get("suites") or {"": {}}).items():
                    names = suite.get("corruptions")
                    rows = [_row(c, s, cell) for s in _sizes(by_size) for c, cell in by_size[s].items()
                            if names is None or c in names]
                    label = f"{kind} volumes ({', '.join(suite['datasets'])})" if kind else ""
                    page.suites.append(("medbench-3d", label, rows))
                    if suite.get("not_applied"):
                        page.other[f"medbench-3d {kind}: left out"] = suite["not_applied"]
        except (AttributeError, TypeError, KeyError, ValueError):
            # a layout this page does not know: show the parameters raw rather than fail the build
            page.suites = []
            page.other.update({k: doc[k] for k in ("medmnist-c", "medbench-3d") if k in doc})
    return page
