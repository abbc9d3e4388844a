"""The versioned benchmark protocol, as data (``medbench/protocols/v<version>.yaml``).

A :class:`Protocol` is immutable. :meth:`Protocol.derive` makes a reduced or modified copy (for
CI or quick looks) whose version is marked ``"<version>+custom"``, so such results are never
mixed with the standard ones.
"""

from __future__ import annotations

import copy
import hashlib
import json
from functools import lru_cache
from importlib import resources
from typing import Any

from .safe_yaml import load_yaml_text

CURRENT_VERSION = "4"
LITE_VERSION = "lite2"  # the lite track's protocol: a cheap screening evaluation, never ranked with the full one


def protocol_file(version: str, suffix: str = ".yaml") -> str:
    """File name of a protocol document (or of its ``_subsets.json`` etc. with ``suffix``) in
    ``medbench/protocols``: ``v3.yaml`` for numbered versions, ``lite2.yaml`` for the lite track."""
    base = str(version).split("+")[0]
    return f"{base}{suffix}" if base.startswith("lite") else f"v{base}{suffix}"


class Protocol:
    """Read-only view of a protocol document; values are reached by attribute or by ``get('a.b')``."""

    def __init__(self, data: dict[str, Any], *, custom: bool = False):
        self._data = data
        self.custom = custom

    @property
    def version(self) -> str:
        return self._data["version"] + ("+custom" if self.custom else "")

    @property
    def track(self) -> str:
        """``"full"`` (the benchmark protocol) or ``"lite"`` (the cheap screening track); never ranked together."""
        return str(self._data.get("track", "full"))

    @property
    def is_standard(self) -> bool:
        return not self.custom

    @property
    def data(self) -> dict[str, Any]:
        return copy.deepcopy(self._data)

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self._data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return copy.deepcopy(node)

    def __getitem__(self, key: str) -> Any:
        return copy.deepcopy(self._data[key])

    def derive(self, **changes: Any) -> "Protocol":
        """A modified copy; keys are dotted paths, e.g. ``derive(**{"adversarial.n_iter": 10})``."""
        data = copy.deepcopy(self._data)
        for dotted, value in changes.items():
            node = data
            *parents, leaf = dotted.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return Protocol(data, custom=True)

    def standard(self) -> "Protocol":
        """The standard protocol this one was derived from (itself when standard). Admission always runs
        under it, so a derived protocol (``--set ...``) cannot change who is admitted."""
        return self if not self.custom else load_protocol(self._data["version"])

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self._data, sort_keys=True).encode()).hexdigest()

    def __repr__(self) -> str:
        return f"Protocol(version={self.version!r})"


@lru_cache(maxsize=8)
def _load(version: str) -> dict[str, Any]:
    try:
        text = resources.files("medbench.protocols").joinpath(protocol_file(version)).read_text()
    except FileNotFoundError:
        raise ValueError(f"Unknown protocol version {version!r}; this medbench knows version {CURRENT_VERSION} "
                         f"(and the lite track, {LITE_VERSION}).") from None
    return load_yaml_text(text, where=f"medbench/protocols/{protocol_file(version)}")


def load_protocol(version: str = CURRENT_VERSION) -> Protocol:
    """The protocol of ``version`` (default: the current one)."""
    return Protocol(copy.deepcopy(_load(str(version))))
