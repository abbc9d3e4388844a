"""Verified attack records: adversarial examples for a ranked model, checked by medbench.

An attack submission (``submissions/attacks/<name>.yaml`` with its ``.npz``) or an extra attack run by
``medbench attack run`` is verified example by example (``medbench submission validate``); what it
proved is kept as a :class:`VerifiedAttack` in ``<leaderboard>/attacks/<dataset>/<model_id>/``. The
site lowers a model's best-known column with every record that matches its result (same weights,
protocol subset and threat); nothing else about the result changes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Strict, StrictInput


class Break(Strict):
    """One example of the protocol's attack subset that the submitted input misclassifies."""

    index: int = Field(ge=0)  # position in the test split (as in ``SubsetInfo.indices``)
    predicted: int = Field(ge=0)  # the model's class on the submitted input
    distance: float = Field(ge=0)  # ||x_adv - x|| in the threat's norm


class VerifiedAttack(Strict):
    """What one verified attack file proved against one model under one threat."""

    model_id: str
    dataset: str
    size: int
    threat: str  # a threat label of the protocol, e.g. "Linf-2/255"
    norm: Literal["Linf", "L2"]
    eps: float  # the threat's budget in [0, 1] pixel units, already scaled for the image size
    attack: str  # the name shown on the site, e.g. "FMN" or the submitted attack's name
    kind: Literal["submission", "maintainer"]  # a pull request, or an extra attack run by medbench itself
    submitter: str
    url: str | None = None  # paper or code
    file_sha256: str  # sha256 of the verified .npz
    weights_sha256: str  # the pinned weights the examples were checked against
    protocol_version: str
    subset_sha256: str  # SubsetInfo.indices_sha256 of the threat's attack subset
    subset_labels: list[int]  # the test labels of that subset, in its order (the best-known BA needs them)
    tolerance: float  # slack allowed on the norm bound, stated in the protocol change list / docs
    submitted: int  # examples in the file
    breaks: list[Break]  # examples inside the ball, in [0, 1], misclassified (deterministically)
    refused: dict[str, int] = Field(default_factory=dict)  # reason -> examples that did not count
    verified_at: str  # ISO 8601 UTC
    medbench_version: str


class AttackSubmission(StrictInput):
    """``submissions/attacks/<name>.yaml``: adversarial examples for a zoo model, offered by pull request.

    The ``.npz`` beside it (``file``) holds exactly two arrays, read with ``allow_pickle=False``:
    ``indices`` (int64, k) positions in the test split, each in the threat's attack subset, no repeats;
    ``images`` (k x C x H x W, or k x C x D x H x W for 3D) as uint8 (read as /255) or float32 in [0, 1].
    """

    model_id: str = Field(min_length=1, max_length=128)
    dataset: str = Field(min_length=1, max_length=64)
    size: int = 28
    threat: str = Field(min_length=1, max_length=64)  # a threat label of the current protocol
    attack: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._+()-]*$")
    submitter: str = Field(min_length=1, max_length=200)
    url: str | None = Field(default=None, max_length=500, pattern=r"^https://")  # paper or code
    file: str = Field(min_length=5, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*\.npz$")  # beside the YAML
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # of the .npz
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # the zoo entry's pinned weights the examples target
    notes: str | None = Field(default=None, max_length=2000)
