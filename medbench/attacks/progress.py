"""Progress of an AutoAttack threat: which attack runs, how many points are still robust, an honest ETA.

AutoAttack's cost is far from uniform: each attack runs only on the points still robust, and Square
(thousands of queries per point) costs many times what APGD does. A bar counting "attack x image"
units therefore extrapolates badly. This bar counts attack runs (one per attack and chunk), shows the
running attack and the points it works on, and estimates the remaining time from the measured cost
per attacked point of each attack (kept across the threats of a run, per norm), times the points that
are expected to reach it. Until an attack has run once its cost is unknown and the ETA says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tqdm.auto import tqdm

# (norm, attack) -> seconds per attacked point, measured during this process (reused across threats)
_COSTS: dict[tuple[str, str], float] = {}


def _fmt_s(s: float) -> str:
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.0f}min"
    return f"{s / 3600:.1f}h"


@dataclass
class AttackProgress:
    """A tqdm bar over the (chunk, attack) runs of one threat, with per-attack status and a cost-model ETA."""

    label: str
    norm: str
    attacks: list[str]
    chunk_sizes: list[int]
    enabled: bool = True
    # fraction of a chunk's points that reach each attack (still robust before it), as observed so far
    _reach: dict[str, list[float]] = field(default_factory=dict)
    _t0: float = 0.0
    _chunk: int = 0

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
        self.bar.update(len(self.attacks))

    def skip_attacks(self, n: int) -> None:
        """The first ``n`` attacks of the current chunk, restored from its checkpoint."""
        self.bar.update(n)

    def start(self, attack: str, n_attacked: int, n_chunk: int) -> None:
        self._t0 = time.perf_counter()
        self._reach.setdefault(attack, []).append(n_attacked / max(1, n_chunk))
        chunk = f" chunk {self._chunk + 1}/{len(self.chunk_sizes)}," if len(self.chunk_sizes) > 1 else ""
        self.bar.set_description_str(f"{self.label}:{chunk} {attack} on {n_attacked}/{n_chunk} robust points")
        self.bar.set_postfix_str(self._eta(attack, n_attacked), refresh=True)

    def done(self, attack: str, n_attacked: int, n_robust_left: int) -> None:
        wall = time.perf_counter() - self._t0
        if n_attacked:
            _COSTS[(self.norm, attack)] = wall / n_attacked
        self.bar.update(1)
        eta = self._eta(None, 0)
        self.bar.set_postfix_str(f"{attack} done in {_fmt_s(wall)}, {n_robust_left} still robust"
                                 + (f"; {eta}" if eta else ""), refresh=True)

    def _eta(self, current: str | None, n_current: int) -> str:
        """Remaining time: the current attack plus every (chunk, attack) run still to come."""
        total = 0.0
        steps: list[tuple[str, float]] = []
        if current is not None:
            steps.append((current, n_current))
        pos = self.attacks.index(current) + 1 if current is not None else self.bar.n % len(self.attacks) or 0
        if current is None and self.bar.n % len(self.attacks) == 0:
            pos = len(self.attacks)  # the chunk just finished
        for a in self.attacks[pos:]:
            steps.append((a, self._expected(a) * self.chunk_sizes[self._chunk]))
        for n in self.chunk_sizes[self._chunk + 1:]:
            steps.extend((a, self._expected(a) * n) for a in self.attacks)
        for attack, n in steps:
            cost = _COSTS.get((self.norm, attack))
            if cost is None:
                return f"ETA unknown until {attack} has run once"
            total += cost * n
        return f"ETA {_fmt_s(total)}" if steps else ""

    def _expected(self, attack: str) -> float:
        seen = self._reach.get(attack)
        if seen:
            return sum(seen) / len(seen)
        first = self._reach.get(self.attacks[0])
        return sum(first) / len(first) if first else 1.0
