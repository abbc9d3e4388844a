"""The fixed adversarial evaluation subset (PROTOCOL.md section 4).

The whole test split when it has at most ``subset_size`` images, otherwise a stratified random
subset of ``subset_size`` (seed ``subset_seed``). The indices' sha256 is protocol data
(``medbench/protocols/v<version>_subsets.json``, ``lite2_subsets.json``): a subset that does not match the stored hash is an
error, so every result is computed on exactly the published examples.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from ..errors import MedbenchError
from ..metrics import stratified_indices
from ..schema import SubsetInfo


class SubsetMismatchError(MedbenchError):
    """The computed evaluation subset differs from the one stored in the protocol data."""


def indices_sha256(indices: np.ndarray) -> str:
    """sha256 of the sorted indices as little-endian int64 bytes."""
    return hashlib.sha256(np.sort(np.asarray(indices)).astype("<i8").tobytes()).hexdigest()


@dataclass(frozen=True)
class Subset:
    indices: np.ndarray  # sorted positions in the test split
    info: SubsetInfo

    def __len__(self) -> int:
        return len(self.indices)


@lru_cache(maxsize=4)
def stored_subsets(version: str) -> dict[str, dict]:
    """The subsets stored as protocol data for ``version`` (dataset -> n, seed, sha256, ...); {} if none."""
    from ..protocol import protocol_file

    try:
        text = resources.files("medbench.protocols").joinpath(protocol_file(version, "_subsets.json")).read_text()
    except FileNotFoundError:
        return {}
    return json.loads(text)["subsets"]


def compute_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Whole split (arange) when it has at most ``size`` examples, else ``stratified_indices``."""
    n = len(labels)
    return np.arange(n) if n <= size else stratified_indices(labels, size, seed=seed)


def evaluation_subset(dataset: str, labels: np.ndarray, protocol) -> Subset:
    """The evaluation subset of ``dataset`` under ``protocol``, verified against the stored hash.

    A derived (``+custom``) protocol with a smaller ``subset_size`` gives a smaller stratified
    subset that is not verified (it is not protocol data).
    """
    adv = protocol["adversarial"]
    size, seed = int(adv["subset_size"]), int(adv["subset_seed"])
    idx = compute_subset(labels, size, seed)
    digest = indices_sha256(idx)
    stored = stored_subsets(protocol.version).get(dataset)
    standard = stored is not None and stored["subset_size"] == size and stored["seed"] == seed
    if standard and (stored["n"] != len(idx) or stored["indices_sha256"] != digest):
        raise SubsetMismatchError(
            f"The evaluation subset of {dataset} ({len(idx)} examples, sha256 {digest[:12]}...) differs from "
            f"protocol {protocol.version}'s stored subset ({stored['n']} examples, sha256 "
            f"{stored['indices_sha256'][:12]}...). The test labels differ from the official file, or the "
            "subset code changed. Fix: verify the data file (`medbench data verify`) and reinstall medbench."
        )
    info = SubsetInfo(n=len(idx), seed=seed, indices_sha256=digest, whole_split=len(idx) == len(labels))
    return Subset(indices=idx, info=info)
