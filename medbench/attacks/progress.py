"""Progress of an AutoAttack threat: which attack runs, how many points are still robust, an honest ETA.

AutoAttack's cost is far from uniform: each attack runs only on the points still robust, Square
(thousands of queries per point) costs many times what APGD does, and on a CPU a pass over a small
batch costs nearly what a large one does. Seconds per attacked point therefore extrapolate badly (one
robust point left for Square can make a minute look like hours). The ETA instead counts the passes
each attack makes (:func:`passes`) and prices a pass of ``n`` images with a :class:`UnitCost`
measured on the model before the first attack; once an attack has run, the ratio of its measured to
its predicted seconds corrects its later predictions (kept across the threats of a process, per norm).
The points that reach an attack are predicted from the chunks seen so far.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

# (norm, attack) -> measured / predicted seconds of that attack's runs in this process (reused across threats)
_RATIOS: dict[tuple[str, str], float] = {}


def _fmt_s(s: float) -> str:
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.0f}min"
    return f"{s / 3600:.1f}h"


@dataclass(frozen=True)
class UnitCost:
    """Seconds of one forward pass (``forward``) and one forward+backward pass (``backward``) of a batch of
    ``n`` images, each as ``a + b * n``."""

    forward: tuple[float, float]
    backward: tuple[float, float]

    def seconds(self, kind: str, n: int) -> float:
        a, b = self.forward if kind == "f" else self.backward
        return a + b * n


def measure_unit_cost(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int = 5) -> UnitCost:
    """Time forward and forward+backward passes of ``model`` on one image and on ``x`` (at most 64 images;
    the fastest of ``repeats``: a busy machine only ever adds time) and fit ``a + b * n`` to each."""
    n = min(len(x), 64)
    xs, ys = x[:n], y[:n]

    def timed(batch: slice, backward: bool) -> float:
        times = []
        for _ in range(repeats):
            xb = xs[batch].detach().clone().requires_grad_(backward)
            t0 = time.perf_counter()
            if backward:  # the input gradient only, as the attacks take it (no parameter .grad is left)
                torch.autograd.grad(torch.nn.functional.cross_entropy(model(xb), ys[batch]), xb)
            else:
                with torch.no_grad():
                    model(xb)
            times.append(time.perf_counter() - t0)
        return min(times)

    def fit(backward: bool) -> tuple[float, float]:
        one, many = timed(slice(0, 1), backward), timed(slice(0, n), backward)
        b = max(0.0, (many - one) / (n - 1)) if n > 1 else 0.0
        return max(0.0, one - b), b

    return UnitCost(forward=fit(False), backward=fit(True))


def passes(attack: str, config) -> tuple[int, str]:
    """(passes per run, "f" forward or "b" forward+backward) that ``attack`` makes over the points it attacks
    under ``config`` (an :class:`~medbench.attacks.autoattack.AttackConfig`); Square's count is its query
    budget, spent in full on the points it cannot break."""
    restarts, targets = config.n_restarts, config.n_target_classes or 1
    if attack == "square":
        return config.n_queries * restarts, "f"
    if attack in ("apgd-t", "fab-t"):
        return config.n_iter * targets * restarts, "b"
    return config.n_iter * restarts, "b"


@dataclass
class AttackProgress:
    """A tqdm bar over the (chunk, attack) runs of one threat, with per-attack status and a cost-model ETA.

    ``config`` and ``unit`` (see :func:`measure_unit_cost`) price the runs ahead; without them the ETA is
    unknown until an attack has run once."""

    label: str
    norm: str
    attacks: list[str]
    chunk_sizes: list[int]
    enabled: bool = True
    config: object = None
    unit: UnitCost | None = None
    # fraction of a chunk's points that reach each attack (still robust before it), as observed so far
    _reach: dict[str, list[float]] = field(default_factory=dict)
    _left: dict[str, list[float]] = field(default_factory=dict)  # fraction still robust after each attack
    _t0: float = 0.0
    _chunk: int = 0
    _runs: int = 0  # attack runs finished or restored (the bar does not count while it is disabled)
    _n_chunk: int = 1

    def __post_init__(self) -> None:
        self.bar = tqdm(total=len(self.chunk_sizes) * len(self.attacks), desc=self.label, unit="attack run",
                        disable=not self.enabled, leave=False,
                        bar_format="{desc}: {n}/{total} attack runs, {elapsed} elapsed{postfix}")

    def __enter__(self) -> "AttackProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def chunk(self, i: int) -> None:
        self._chunk = i

    def skip_chunk(self) -> None:
        """A chunk restored from a checkpoint."""
        self._update(len(self.attacks))

    def skip_attacks(self, n: int) -> None:
        """The first ``n`` attacks of the current chunk, restored from its checkpoint."""
        self._update(n)

    def _update(self, n: int) -> None:
        self._runs += n
        self.bar.update(n)

    def start(self, attack: str, n_attacked: int, n_chunk: int) -> None:
        self._t0, self._n_chunk = time.perf_counter(), max(1, n_chunk)
        self._reach.setdefault(attack, []).append(n_attacked / max(1, n_chunk))
        chunk = f" chunk {self._chunk + 1}/{len(self.chunk_sizes)}," if len(self.chunk_sizes) > 1 else ""
        self.bar.set_description_str(f"{self.label}:{chunk} {attack} on {n_attacked}/{n_chunk} robust points")
        self.bar.set_postfix_str(self._eta(attack, n_attacked), refresh=True)

    def done(self, attack: str, n_attacked: int, n_robust_left: int) -> None:
        wall = time.perf_counter() - self._t0
        predicted = self.predict(attack, n_attacked, corrected=False)
        if n_attacked and predicted:
            _RATIOS[(self.norm, attack)] = wall / predicted
        self._left.setdefault(attack, []).append(n_robust_left / self._n_chunk)
        self._update(1)
        eta = self._eta(None, 0)
        self.bar.set_postfix_str(f"{attack} done in {_fmt_s(wall)}, {n_robust_left} still robust"
                                 + (f"; {eta}" if eta else ""), refresh=True)

    def predict(self, attack: str, n: float, corrected: bool = True) -> float | None:
        """Predicted seconds of ``attack`` on ``n`` points (None: no unit cost, or not corrected by a run)."""
        if n <= 0:
            return 0.0
        ratio = _RATIOS.get((self.norm, attack)) if corrected else 1.0
        if self.unit is None or self.config is None:
            return None
        count, kind = passes(attack, self.config)
        return count * self.unit.seconds(kind, round(n)) * (1.0 if ratio is None else ratio)

    def remaining_s(self, current: str | None = None, n_current: int = 0) -> tuple[float | None, bool]:
        """(seconds still to come: the current attack from its start plus every (chunk, attack) run ahead,
        or None when a run cannot be priced; whether it is provisional: an attack ahead has not run yet, so its
        price is uncorrected and the points that reach it are counted as if the attacks before it broke none)."""
        steps: list[tuple[str, float]] = []
        if current is not None:
            steps.append((current, n_current))
            pos = self.attacks.index(current) + 1
        else:
            pos = self._runs % len(self.attacks) or len(self.attacks)  # (0 after a chunk's last attack)
        for a in self.attacks[pos:]:
            steps.append((a, self._expected(a) * self.chunk_sizes[self._chunk]))
        for n in self.chunk_sizes[self._chunk + 1:]:
            steps.extend((a, self._expected(a) * n) for a in self.attacks)
        total = 0.0
        for attack, n in steps:
            seconds = self.predict(attack, n)
            if seconds is None:
                return None, False
            total += seconds
        if current is not None:
            total -= time.perf_counter() - self._t0
        provisional = any(not self._reach.get(a) or (self.norm, a) not in _RATIOS for a, n in steps if n > 0)
        return max(0.0, total), provisional

    def _eta(self, current: str | None, n_current: int) -> str:
        left, provisional = self.remaining_s(current, n_current)
        if left is None:
            missing = next(a for a in [current, *self.attacks] if a is not None and self.predict(a, 1) is None)
            return f"ETA unknown until {missing} has run once"
        if not left and current is None:
            return ""
        return f"ETA {_fmt_s(left)}" + (" (first estimate)" if provisional else "")

    def _expected(self, attack: str) -> float:
        """The fraction of a chunk's points expected to reach ``attack``: as seen so far, else the fraction
        still robust after the latest attack before it that has run (an upper bound), else all."""
        seen = self._reach.get(attack)
        if seen:
            return sum(seen) / len(seen)
        for earlier in reversed(self.attacks[:self.attacks.index(attack)]):
            if self._left.get(earlier):
                return sum(self._left[earlier]) / len(self._left[earlier])
            if self._reach.get(earlier):
                return sum(self._reach[earlier]) / len(self._reach[earlier])
        return 1.0
