"""Leaderboard rows: one per (entry, result), grouped into tracks (size x protocol version) and ranked.

A track never mixes protocol versions or image sizes. Every number in a row is read from the
entry's ``EvaluationResult``; registry metadata (architecture, recipe, paper) only labels it.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field

import numpy as np

from ..attacks.best_known import best_known_sections
from ..data import DATASETS
from ..schema.entry import ModelEntry
from ..schema.literature import PublishedResult
from ..schema.result import EvaluationResult
from .load import Inputs, LoadedResult
from .marks import threat_label
from .ranking import OVERLAP, PAIRED, RankItem, tie_groups

HEADLINE_LINF = "Linf-2/255"


@dataclass(frozen=True)
class Flag:
    code: str  # short machine name: not-admitted, unreliable, weights-mismatch, unregistered, incomplete
    label: str  # what the table shows
    detail: str  # why (shown as a tooltip and on the model page)


@dataclass
class Row:
    dataset: str
    model_id: str
    slug: str
    entry: ModelEntry | None
    loaded: LoadedResult | None
    flags: list[Flag] = field(default_factory=list)
    rank: int | None = None
    group: int | None = None
    records: list = field(default_factory=list)  # verified attack records (VerifiedAttack) of this model
    best_known: dict = field(default_factory=dict)  # threat -> BestKnown (AutoAttack lowered by the records)

    @property
    def result(self) -> EvaluationResult | None:
        return self.loaded.result if self.loaded else None

    @property
    def ranked(self) -> bool:
        return self.rank is not None

    # --- numbers (all from the result) ---
    @property
    def clean_ba(self) -> float | None:
        r = self.result
        return r.clean.balanced_accuracy if r and r.clean else None

    def clean_ci(self, metric: str = "balanced_accuracy") -> tuple[float | None, float | None]:
        """The 95% interval of a clean metric (``balanced_accuracy``, ``accuracy``, ``auc``), or Nones."""
        r = self.result
        ci = r.clean.ci.get(metric) if r and r.clean else None
        return (ci.low, ci.high) if ci else (None, None)

    @property
    def clean_auc(self) -> float | None:
        r = self.result
        return r.clean.auc if r and r.clean else None

    def calibration_numbers(self) -> list[float | None]:
        """Clean ECE with its interval, ECE on every corrupted copy, clean AURC (Nones before protocol 4)."""
        r = self.result
        c, k = (r.clean.calibration if r and r.clean else None), (r.corruptions.calibration if r and r.corruptions else None)
        return [c.ece.value, c.ece.ci.low, c.ece.ci.high, k["all"].ece.value if k else None, c.aurc.value] if c else [None] * 5

    @property
    def corruption_ba(self) -> float | None:
        r = self.result
        return r.corruptions.balanced_accuracy if r and r.corruptions else None

    def robust(self, threat: str) -> tuple[float | None, float | None, float | None]:
        """(robust balanced accuracy, CI low, CI high) under ``threat``."""
        return _with_ci(self.result.adversarial.get(threat) if self.result else None)

    def best(self, threat: str) -> tuple[float | None, float | None, float | None]:
        """The same for the best known (AutoAttack lowered by the verified attack records)."""
        return _with_ci(self.best_known.get(threat))

    @functools.cached_property  # (a model page asks three times)
    def adversarial(self) -> list:
        """(threat, AdversarialResult) pairs, Linf before L2, small eps first."""
        res = self.result
        return sorted(res.adversarial.items(), key=lambda kv: _threat_order(kv[0])) if res else []

    # --- labels (from the registry) ---
    @property
    def architecture(self) -> str:
        return self.entry.architecture if self.entry else ""

    @property
    def recipe(self) -> str:
        if not self.entry:
            return ""
        r = self.entry.recipe
        if r.eps is not None and r.norm:
            eps = f"{r.eps * 255:.3g}/255" if r.norm == "Linf" else f"{r.eps:.3g}"
            return f"{r.method} ({r.norm} {eps})"
        return r.method

    @property
    def method(self) -> str:
        return self.entry.recipe.method if self.entry else ""

    @property
    def extra_data(self) -> str:
        if not self.entry:
            return ""
        return "yes" if self.entry.recipe.extra_data else "no"

    @property
    def venue(self) -> str:
        p = self.entry.paper if self.entry else None
        if p:
            return f"{p.venue} {p.year}"
        return "baseline" if self.entry and self.entry.is_baseline else ""


def _with_ci(section) -> tuple[float | None, float | None, float | None]:
    if section is None:
        return None, None, None
    ci = section.robust_balanced_accuracy_ci
    return section.robust_balanced_accuracy, ci.low if ci else None, ci.high if ci else None


@dataclass
class Track:
    """One ranked table: the results of one dataset at one size under one protocol version."""

    dataset: str
    size: int
    protocol: str
    rows: list[Row]
    threats: list[str]  # robust columns, in order
    rank_by: str  # a threat label or "clean"
    tie_method: str  # PAIRED or OVERLAP
    tie_note: str

    @property
    def standard(self) -> bool:
        return "+" not in self.protocol

    @property
    def key(self) -> str:
        return f"{self.size}px-v{self.protocol}"

    @property
    def not_ranked(self) -> list[tuple[Row, list[Flag]]]:
        """Rows without a rank, each with the flags that say why (not admitted, evaluation unreliable, ...)."""
        why = ("not-admitted", "unreliable", "weights-mismatch")
        return [(r, [f for f in r.flags if f.code in why]) for r in self.rows if not r.ranked]


@dataclass
class DatasetBoard:
    dataset: str
    tracks: list[Track]
    unevaluated: list[Row]  # registry entries with no result yet
    literature: list[PublishedResult] = field(default_factory=list)  # reported, never ranked

    def reported(self, size: int) -> list[PublishedResult]:
        """The published numbers for this dataset at ``size`` (shown as labelled "reported" rows)."""
        return [p for p in self.literature if p.size == size]

    def comparisons(self, track: Track) -> list[tuple[PublishedResult, list[Row]]]:
        """Each published number at the track's size, with the track's reference baselines trained by the
        same recipe (medbench's ERM baselines beside the paper's ERM ResNet-18). Submitted models are
        compared in the main table only, so this stays a short table at any leaderboard size."""
        return [(p, [r for r in track.rows if r.entry and r.entry.is_baseline and r.method == p.recipe
                     and r.result.clean]) for p in self.reported(track.size) if p.recipe]

    @property
    def rows(self) -> list[Row]:
        return [r for t in self.tracks for r in t.rows]

    @property
    def best(self) -> Row | None:
        """The top-ranked entry of the primary track (standard protocol, smallest size)."""
        for t in self.tracks:
            if t.standard:
                ranked = [r for r in t.rows if r.ranked]
                return ranked[0] if ranked else None
        return None


def slugify(model_id: str) -> str:
    """A file name for a model page; ids are validated by the schema, but never trust a file name."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", model_id).strip(".") or "model"
    if safe != model_id:
        safe += "-" + hashlib.sha256(model_id.encode()).hexdigest()[:8]
    return safe


def _flags(row: Row, expected_threats: list[str]) -> list[Flag]:
    res, entry, flags = row.result, row.entry, []
    if res is None:
        return flags
    # the measurement part of each message (before " - why it matters"), so the reason is visible
    failed_adm = [f"{c.name} ({c.message.split(' - ')[0]})" for c in res.checks if c.kind == "admission" and not c.passed]
    failed_san = [f"{c.name} ({c.message.split(' - ')[0]})" for c in res.checks if c.kind == "sanity" and not c.passed]
    if failed_adm:
        flags.append(Flag("not-admitted", "not admitted", "failed admission checks, so never ranked: "
                          + "; ".join(failed_adm)))
    elif not res.admission_checked:
        flags.append(Flag("not-admitted", "not admitted", res.not_admitted_because[0]))
    if failed_san:
        flags.append(Flag("unreliable", "evaluation unreliable", "failed sanity checks, so not ranked until a stronger "
                          "or adaptive evaluation clears it: " + "; ".join(failed_san)))
    if entry is None:
        flags.append(Flag("unregistered", "no registry entry", "this result has no model_zoo entry"))
    elif res.provenance.weights_sha256 and res.provenance.weights_sha256 != entry.weights.sha256:
        flags.append(Flag("weights-mismatch", "weights differ",
                          "the result was computed on weights whose sha256 differs from the registry's"))
    missing = [t for t in expected_threats if t not in res.adversarial]
    if res.clean is None:
        missing.insert(0, "clean")
    if res.corruptions is None:
        missing.append("corruptions")
    if missing:
        why = f" ({'; '.join(f'{t} {r}' for t, r in res.skipped.items())})" if res.skipped else ""
        flags.append(Flag("incomplete", "incomplete", "not evaluated: " + ", ".join(missing) + why))
    return flags


def _subset_labels(results: list[EvaluationResult], sha: str, num_classes: int, multilabel: bool) -> np.ndarray | None:
    """Labels of the evaluation subset ``sha``, when the results determine them; otherwise None.

    A stored label list is used when the schema has one. Otherwise each AutoAttack record says, per
    example, whether its final prediction is correct (``robust_flags``): a correct prediction is the
    label, and for two classes a wrong one is the other class. Conflicting records give None.
    """
    if multilabel:
        return None
    labels: np.ndarray | None = None
    for adv in (a for res in results for a in res.adversarial.values() if a.subset.indices_sha256 == sha):
        stored = getattr(adv.subset, "labels", None)
        if stored is not None:
            return np.asarray(stored, dtype=np.int64)
        pred = np.asarray(adv.adv_predictions, dtype=np.int64)
        ok = np.asarray(adv.robust_flags, dtype=bool)
        if pred.shape != ok.shape or (labels is not None and len(labels) != len(pred)):
            return None
        known = np.where(ok, pred, 1 - pred if num_classes == 2 else -1)
        if labels is None:
            labels = known
        elif ((labels >= 0) & (known >= 0) & (labels != known)).any():
            return None
        labels = np.where(labels >= 0, labels, known)
    if labels is None or labels.size == 0 or (labels < 0).any() or (labels >= num_classes).any():
        return None  # nothing recovered (an empty subset cannot be ranked by a paired test)
    return labels


def _rank_track(track: Track, all_results: list[EvaluationResult]) -> None:
    spec = DATASETS[track.dataset]
    # a number is ranked only if it was earned: admitted, every sanity check passed, the registry's weights
    candidates = [r for r in track.rows if r.result.reliable and not any(f.code == "weights-mismatch" for f in r.flags)]
    items: list[RankItem] = []
    labels = None
    if track.rank_by == "clean":
        for r in candidates:
            if r.clean_ba is not None:
                lo, hi = r.clean_ci()
                items.append(RankItem(r.model_id, r.clean_ba, lo, hi))
        track.tie_note = ("Tie groups: entries whose 95% bootstrap intervals of clean balanced accuracy overlap the "
                          "group leader's (per-example test labels are not stored in the results).")
    else:
        shas = {r.result.adversarial[track.rank_by].subset.indices_sha256
                for r in candidates if track.rank_by in r.result.adversarial}
        sha = shas.pop() if len(shas) == 1 else None
        if sha is not None:
            labels = _subset_labels(all_results, sha, spec.num_classes, spec.is_multilabel)
        for r in candidates:
            adv = r.result.adversarial.get(track.rank_by)
            if adv is None:
                continue
            ci = adv.robust_balanced_accuracy_ci
            items.append(RankItem(r.model_id, adv.robust_balanced_accuracy, ci.low if ci else None,
                                  ci.high if ci else None, np.asarray(adv.adv_predictions, dtype=np.int64)))
    ranking, method = tie_groups(items, labels=labels, num_classes=spec.num_classes)
    track.tie_method = method
    if track.rank_by != "clean":
        if method == PAIRED:
            track.tie_note = (f"Tie groups: entries whose paired bootstrap 95% interval of the difference in robust "
                              f"balanced accuracy ({track.rank_by}) from the group leader contains 0 "
                              "(1,000 resamples of the shared evaluation subset, seed 0).")
        else:
            why = ("the entries were attacked on different subsets" if len(shas) else
                   "the per-example labels of the subset are not recoverable from the stored results")
            track.tie_note = (f"Tie groups: entries whose 95% intervals of robust balanced accuracy "
                              f"({track.rank_by}) overlap the group leader's; the paired test was not possible "
                              f"because {why}.")
    by_id = {x.key: x for x in ranking}
    for r in track.rows:
        if r.model_id in by_id:
            r.rank, r.group = by_id[r.model_id].rank, by_id[r.model_id].group
    order = {x.key: i for i, x in enumerate(ranking)}

    def sort_key(r: Row):
        if r.model_id in order:
            return (0, order[r.model_id], "")
        return (1, -(r.clean_ba if r.clean_ba is not None else -1), r.model_id)

    track.rows.sort(key=sort_key)


def _threat_order(label: str) -> tuple:
    norm, _, eps = label.partition("-")
    num, _, den = eps.partition("/")
    try:
        value = float(num) / float(den or 1)
    except ValueError:
        value = float("inf")
    return ({"Linf": 0, "L2": 1}.get(norm, 2), value, label)


def build_board(ds: str, inputs: Inputs) -> DatasetBoard:
    """The board of dataset ``ds`` from the entries and results of ``inputs`` (other datasets are ignored)."""
    all_results = [lr.result for (d, _), lr in inputs.results.items() if d == ds]
    by_track: dict[tuple[int, str], list[Row]] = {}
    for (d, mid), lr in sorted(inputs.results.items()):
        if d != ds:
            continue
        row = Row(ds, mid, slugify(mid), inputs.entries.get((ds, mid)), lr, records=inputs.records.get((ds, mid), []))
        row.best_known, problems = best_known_sections(lr.result, row.records)
        inputs.problems += problems
        key = (lr.result.size, lr.result.provenance.protocol_version)
        by_track.setdefault(key, []).append(row)
    tracks = []
    for (size, protocol), rows in sorted(by_track.items(), key=lambda kv: ("+" in kv[0][1], kv[0][0], kv[0][1])):
        present = {t for r in rows for t in r.result.adversarial}
        threats = expected = sorted(present, key=_threat_order)  # e.g. 3D datasets have no L2 track
        for r in rows:
            r.flags = _flags(r, expected)
            over = [t for t, bk in r.best_known.items() if bk.autoattack_overestimates]
            if over:
                r.flags.append(Flag("aa-overestimates", "AutoAttack overestimates", "verified attacks break more: "
                                    "the best-known robust balanced accuracy lies below AutoAttack's 95% interval "
                                    "under " + ", ".join(threat_label(t) for t in over)))
        linf = [t for t in threats if t.startswith("Linf") and t in present]
        rank_by = HEADLINE_LINF if HEADLINE_LINF in present else (linf[0] if linf else "clean")
        track = Track(ds, size, protocol, rows, threats, rank_by, OVERLAP, "")
        _rank_track(track, all_results)
        tracks.append(track)
    unevaluated = [Row(ds, mid, slugify(mid), e, None) for (d, mid), e in sorted(inputs.entries.items())
                   if d == ds and (d, mid) not in inputs.results]
    return DatasetBoard(ds, tracks, unevaluated, [p for p in inputs.literature if p.dataset == ds])
