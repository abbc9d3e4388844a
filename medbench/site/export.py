"""Downloads: ``results.json`` (a versioned, stable machine-readable API) and CSV, overall and per dataset.

API version 1 (``api_version``): ``datasets.<name>.tracks[]`` holds one ranked table per (size,
protocol) with ``entries[]`` best first; numbers are fractions in [0, 1] exactly as the harness
wrote them, ``null`` when not measured. Numbers the authors report are only under
``reported_by_authors``; numbers from the literature (not zoo entries) only under
``datasets.<name>.reported_in_literature``. ``at_chance`` says, per number, whether its 95%
interval contains ``chance_balanced_accuracy``, ``below_chance`` whether it lies wholly below it;
``corruptions.be``/``rbe`` are ``null`` unless the record marks them defined. Fields are only ever
added within a version.
"""

from __future__ import annotations

import csv
import io
import json

from ..data import DATASETS
from .marks import chance_level, chance_status, corruption_errors
from .table import DatasetBoard, Row, Track

API_VERSION = 1


def _errors(cor) -> dict:
    """BE/rBE only where the record marks them defined (``null`` otherwise; see ``marks.corruption_errors``)."""
    err = corruption_errors(cor)
    return {"be": err["be"], "rbe": err["rbe"],
            "per_corruption_errors": {k: {"be": be, "rbe": rbe} for k, (be, rbe) in err["per_corruption"].items()}}


def _calibration(section) -> dict | None:  # protocol 4+: ECE, Brier, NLL, AURC, selective accuracy, with intervals
    return section.calibration.model_dump(mode="json") if section.calibration else None


def row_record(row: Row, track: Track | None) -> dict:
    """The API record of one row (registry labels + the result's numbers + provenance)."""
    e, res, lr = row.entry, row.result, row.loaded
    rec: dict = {"model_id": row.model_id, "model_page": f"{row.dataset}/{row.slug}.html"}
    if track is not None:
        rec.update(rank=row.rank, tie_group=row.group, ranked=row.ranked,
                   flags=[{"code": f.code, "detail": f.detail} for f in row.flags])
    rec["architecture"] = e.architecture if e else None
    rec["recipe"] = ({"method": e.recipe.method, "epochs": e.recipe.epochs, "eps": e.recipe.eps,
                      "norm": e.recipe.norm, "steps": e.recipe.steps, "extra_data": e.recipe.extra_data}
                     if e else None)
    rec["paper"] = e.paper.model_dump(mode="json") if e and e.paper else None
    rec["license"] = e.license if e else None
    rec["weights_sha256"] = e.weights.sha256 if e else None
    rec["reported_by_authors"] = e.reported.model_dump(mode="json") if e and e.reported else None
    if res is None:
        return rec
    rec["admitted"] = res.admitted
    rec["skipped"] = dict(res.skipped)  # threat -> why it was not run (e.g. the model is not admitted)
    clean = res.clean
    rec["clean"] = None if clean is None else {
        "n": clean.n, "balanced_accuracy": clean.balanced_accuracy, "accuracy": clean.accuracy, "auc": clean.auc,
        "ci": {k: [v.low, v.high] for k, v in sorted(clean.ci.items())}, "calibration": _calibration(clean)}
    cor = res.corruptions
    rec["corruptions"] = None if cor is None else {
        "suite": cor.suite, "balanced_accuracy": cor.balanced_accuracy, "auc": cor.auc,
        "relative_robustness": cor.relative_robustness, **_errors(cor),
        # BE / rBE means are over the corruptions where each is defined; every corruption is listed
        "reference_model": cor.reference_model, "be_defined": cor.be_defined, "be_undefined": cor.be_undefined,
        "rbe_defined": cor.rbe_defined, "rbe_undefined": cor.rbe_undefined,
        "rbe_min_reference_gap": cor.rbe_min_reference_gap, "be_rbe_note": cor.be_rbe_note,
        "relative_errors": [r.model_dump(mode="json") for r in cor.relative_errors],
        "calibration": {k: v.model_dump(mode="json") for k, v in (cor.calibration or {}).items()} or None}
    rec["adversarial"] = {
        t: {"robust_balanced_accuracy": a.robust_balanced_accuracy,
            "ci": [a.robust_balanced_accuracy_ci.low, a.robust_balanced_accuracy_ci.high]
            if a.robust_balanced_accuracy_ci else None,
            "robust_accuracy": a.robust_accuracy, "auc_under_attack": a.auc_under_attack,
            "clean_balanced_accuracy_on_subset": a.clean_balanced_accuracy,
            "subset_n": a.subset.n, "subset_sha256": a.subset.indices_sha256, "calibration": _calibration(a),
            "attacks": a.config.attacks, "norm": a.config.norm, "eps": a.config.eps,
            # AutoAttack lowered by the verified attack records, each source with its provenance
            "best_known": row.best_known[t].model_dump(mode="json", exclude={"threat", "robust_flags", "broken_by"})
            if t in row.best_known else None}
        for t, a in sorted(res.adversarial.items())}
    ch = chance_level(row.dataset)
    status = {"clean": chance_status(row.clean_ba, *row.clean_ci(), ch),
              **{t: chance_status(*row.robust(t), ch) for t in sorted(res.adversarial)}}
    rec["at_chance"], rec["below_chance"] = ({k: v == s for k, v in status.items()} for s in ("at", "below"))
    p = res.provenance
    rec["provenance"] = {
        "result_file": f"results/{row.dataset}/{lr.path.name}", "result_sha256": lr.sha256,
        "medbench_version": p.medbench_version, "protocol_version": p.protocol_version,
        "protocol_sha256": p.protocol_sha256, "data_file": p.data_file, "data_md5": p.data_md5,
        "weights_sha256": p.weights_sha256, "seed": p.seed, "device": p.device, "torch_version": p.torch_version,
        "started_at": p.started_at, "wall_time_s": p.wall_time_s,
        # sections carried over from an earlier result of the same weights (medbench.reuse): where they were computed
        "reused": {k: r.model_dump(mode="json") for k, r in p.reused.items()}}
    return rec


def board_record(board: DatasetBoard) -> dict:
    spec = DATASETS[board.dataset]
    return {
        "name": board.dataset, "task": spec.task, "num_classes": spec.num_classes, "is_3d": spec.is_3d,
        "chance_balanced_accuracy": chance_level(board.dataset),
        "license": spec.license, "page": f"{board.dataset}/index.html",
        "tracks": [{"size": t.size, "protocol_version": t.protocol, "standard_protocol": t.standard,
                    "rank_by": t.rank_by, "tie_method": t.tie_method, "tie_note": t.tie_note,
                    "threats": t.threats, "entries": [row_record(r, t) for r in t.rows]} for t in board.tracks],
        "unevaluated": [row_record(r, None) for r in board.unevaluated],
        "reported_in_literature": [p.model_dump(mode="json") for p in board.literature],
    }


def record_line(name: str, record: dict) -> str:
    """One dataset's line of the API document (``join_record_lines``)."""
    return f"{json.dumps(name)}: {json.dumps(record, ensure_ascii=False, separators=(',', ':'))}"


def join_record_lines(lines: list[str], medbench_version: str) -> str:
    """The API document (compact JSON, one dataset per line) from its dataset lines (``record_line`` of each
    ``board_record``)."""
    head = json.dumps({"api_version": API_VERSION, "generator": f"medbench {medbench_version}",
                       "about": "medbench leaderboard results; fractions in [0, 1]; see index.html#api"},
                      ensure_ascii=False)
    return head[:-1] + ', "datasets": {\n' + ",\n".join(lines) + "\n}}\n"


CSV_COLUMNS = ["dataset", "size", "protocol_version", "rank", "tie_group", "model_id", "flags",
               "clean_balanced_accuracy", "clean_balanced_accuracy_ci_low", "clean_balanced_accuracy_ci_high",
               "clean_accuracy", "clean_auc", "corruption_balanced_accuracy", "relative_robustness",
               "clean_ece", "clean_ece_ci_low", "clean_ece_ci_high", "corrupted_ece", "clean_aurc"]

# Characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str | int | float:
    """A CSV cell that no spreadsheet runs: text starting with a formula character gets a leading
    apostrophe; numbers (negative ones included) stay numbers; None is empty."""
    if value is None:
        return ""
    if isinstance(value, (bool, int, float)):
        return value
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


CSV_TAIL = ["architecture", "method", "extra_data", "venue", "reported_clean_auc", "reported_clean_accuracy",
            "reported_robust_accuracy", "result_sha256"]


def csv_part(board: DatasetBoard) -> dict:
    """A board's CSV rows as data (JSON-safe, so the build cache can keep them): ``threats`` (the board's
    robust columns) and ``rows``, each a dict of column -> cell."""
    threats = sorted({t for tr in board.tracks for t in tr.threats})
    rows = []
    for t in board.tracks:
        for r in t.rows:
            res, rep = r.result, (r.entry.reported if r.entry else None)
            lo, hi = r.clean_ci()
            vals = [r.dataset, t.size, t.protocol, r.rank, r.group, r.model_id,
                    ";".join(f.code for f in r.flags), r.clean_ba, lo, hi,
                    res.clean.accuracy if res.clean else None, r.clean_auc, r.corruption_ba,
                    res.corruptions.relative_robustness if res.corruptions else None, *r.calibration_numbers()]
            for th in threats:
                vals += list(r.robust(th))
            vals += [r.architecture, r.method, r.extra_data, r.venue,
                     rep.clean_auc if rep else None, rep.clean_accuracy if rep else None,
                     rep.robust_accuracy if rep else None, r.loaded.sha256]
            rows.append(dict(zip(_columns(threats), map(csv_cell, vals))))
    return {"threats": threats, "rows": rows}


def _columns(threats: list[str]) -> list[str]:
    robust = [f"robust_ba_{t}{end}" for t in threats for end in ("", "_ci_low", "_ci_high")]
    return CSV_COLUMNS + robust + CSV_TAIL


def format_csv(parts: list[dict]) -> str:
    """The CSV of ``csv_part`` pieces, in order: the robust columns are the union of the parts' threats
    (sorted), empty where a part has none."""
    buf = io.StringIO()
    columns = _columns(sorted({t for part in parts for t in part["threats"]}))
    w = csv.DictWriter(buf, columns, lineterminator="\n")
    w.writerow({c: csv_cell(c) for c in columns})
    w.writerows(row for part in parts for row in part["rows"])
    return buf.getvalue()
