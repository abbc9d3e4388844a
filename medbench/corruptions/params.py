"""The corruption parameters of the protocol: per dataset, size, corruption and severity.

They live in ``medbench/protocols/v<version>_corruptions.yaml`` (written by
``scripts/calibrate_corruptions.py``, with the measurement that justifies each calibrated value).
A derived protocol may restrict or override them (for tests and quick looks):
``protocol.derive(**{"corruptions.include": ["pixelate"], "corruptions.parameters": {"pixelate": [...]}})``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from functools import lru_cache
from importlib import resources
from typing import Any

from ..data import DatasetSpec
from ..protocol import CURRENT_VERSION, Protocol
from ..safe_yaml import load_yaml_text
from .registry import CORRUPTION_OPS_2D, CORRUPTION_OPS_3D


@lru_cache(maxsize=4)
def _load(version: str) -> dict[str, Any]:
    base = version.split("+")[0]
    try:
        text = resources.files("medbench.protocols").joinpath(f"v{base}_corruptions.yaml").read_text()
    except FileNotFoundError:
        raise ValueError(f"No corruption parameters for protocol version {base!r} "
                         f"(medbench/protocols/v{base}_corruptions.yaml is missing).") from None
    return load_yaml_text(text, where=f"medbench/protocols/v{base}_corruptions.yaml")


def parameter_document(version: str = CURRENT_VERSION) -> dict[str, Any]:
    """The whole parameter document (published, calibrated and 3D parameters with their measurements)."""
    return copy.deepcopy(_load(str(version)))


def suite_name(spec: DatasetSpec) -> str:
    return "medbench-3d" if spec.is_3d else "medmnist-c"


def corruption_parameters(spec: DatasetSpec, size: int, protocol: Protocol) -> dict[str, list[dict]]:
    """{corruption: [params of severity 1..5]} for ``spec`` at ``size`` under ``protocol``."""
    doc = _load(protocol.version)
    key = str(size)
    if spec.is_3d:
        table = doc["medbench-3d"]
        sizes = table.get("parameters", table)  # version 1: {size: ...}, every 3D dataset gets every corruption
        if key not in sizes:
            raise ValueError(f"The 3D suite has no parameters at size {size}; sizes: {', '.join(sizes)}.")
        names = list(sizes[key])
        if "suites" in table:
            kinds = [s for s in table["suites"].values() if spec.name in s["datasets"]]
            if not kinds:
                raise ValueError(f"{spec.name} is in no 3D suite of protocol {protocol.version}.")
            names = kinds[0]["corruptions"]
        params = {name: sizes[key][name]["params"] for name in names}
    else:
        table = doc["medmnist-c"].get(spec.name)
        if table is None:
            raise ValueError(f"{spec.name} has no MedMNIST-C parameters in protocol {protocol.version}.")
        missing = [c for c, sizes in table.items() if key not in sizes]
        if missing:
            raise ValueError(f"No {spec.name} parameters at size {size} for {', '.join(missing)}; "
                             "re-run scripts/calibrate_corruptions.py.")
        params = {name: sizes[key]["params"] for name, sizes in table.items()}

    severities = protocol.get("corruptions.severities", [1, 2, 3, 4, 5])
    overrides = protocol.get("corruptions.parameters") or {}
    # a 3D dataset's suite depends on the kind of its volumes: only its own corruptions can be overridden
    known = list(params) if spec.is_3d else list(CORRUPTION_OPS_2D)
    for name, plist in overrides.items():
        if name not in known:
            raise ValueError(f"corruptions.parameters names {name!r}, which is not a corruption of the "
                             f"{suite_name(spec)} suite for {spec.name}; known: {', '.join(known)}.")
        if len(plist) != len(severities):
            raise ValueError(f"corruptions.parameters[{name!r}] has {len(plist)} entries; one per severity "
                             f"({len(severities)}) is needed.")
        params[name] = [dict(p) for p in plist]
    include = protocol.get("corruptions.include")
    if include:
        unknown = [c for c in include if c not in params]
        if unknown:
            raise ValueError(f"corruptions.include names {', '.join(unknown)}, not in the {spec.name} suite "
                             f"({', '.join(params)}).")
        params = {c: params[c] for c in include}
    return {name: plist[: len(severities)] for name, plist in params.items()}


def parameters_sha256(params: dict[str, list[dict]]) -> str:
    """Checksum of a parameter table (stored in results and in the cache manifest)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def op_name(spec: DatasetSpec, corruption: str) -> str:
    return (CORRUPTION_OPS_3D if spec.is_3d else CORRUPTION_OPS_2D)[corruption]
