#!/usr/bin/env python
"""Compare rebuilds of the committed leaderboard results made by ``medbench run`` with both executors.

    bash bench/matrix_rebuild.sh DIR local ray      # medbench run, per executor, into DIR/local and DIR/ray
    python bench/matrix_rebuild.py --local DIR/local --ray DIR/ray [--log NAME=FILE ...]

For every committed ``leaderboard/results/<dataset>/<model>.json`` it checks that the local and the Ray
rebuild are identical (``medbench.matrix.assemble.identity``: the JSON without timing and host fields)
and that both equal the committed result (the same identity, with the ``threats`` list compared as a
set: a committed result lists its threats in the order its run asked for them). It records which
sections each store computed and which it carried over (``provenance.reused``: attack sections proven
identical by ``medbench.reuse``, traced to the run that computed them), and writes
``bench/results/matrix_rebuild.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# Fields that describe where and with what a result was computed, not what it measured; a rebuild on another
# machine or a later medbench may differ from the committed record in these alone (each row lists its fields).
ENVIRONMENT_FIELDS = {
    "track": "added to the schema after the reference zoo was evaluated; absent means its default, 'full'",
    "provenance.library_versions.<name>": "a library the record names that the committed record did not list "
                                          "(timm, recorded since it became a dependency)",
    "corruptions.cache_manifest_sha256": "sha256 of the local corrupted-set cache's manifest; it hashed the file, "
                                         "creation time included, until the hash named the content only",
}


def _differing(a, b, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON values differ (lists compared whole)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in sorted(a.keys() | b.keys()) for p in _differing(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def _largest_gap(a, b) -> float | None:
    """The largest |a - b| over the numbers two JSON values hold at the same places (None: no number differs)."""
    if isinstance(a, dict) and isinstance(b, dict):
        gaps = [_largest_gap(a[k], b[k]) for k in a.keys() & b.keys()]
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        gaps = [_largest_gap(x, y) for x, y in zip(a, b)]
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and a != b:
        return abs(a - b)
    else:
        return None
    gaps = [g for g in gaps if g is not None]
    return max(gaps) if gaps else None


def _environmental(path: str, got: dict, ref: dict) -> bool:
    if path == "track":
        return "track" not in ref and got.get("track") == "full"
    if path.startswith("provenance.library_versions."):
        return path.rsplit(".", 1)[1] not in ref["provenance"].get("library_versions", {})
    return path == "corruptions.cache_manifest_sha256"


def main(argv=None) -> int:
    from medbench.matrix.assemble import identity
    from medbench.matrix.store import Store

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--local", type=Path, required=True, help="folder with store/ and out/ of the local rebuild")
    p.add_argument("--ray", type=Path, required=True, help="folder with store/ and out/ of the Ray rebuild")
    p.add_argument("--log", action="append", default=[], help="NAME=FILE: a rebuild's log, kept in the JSON")
    args = p.parse_args(argv)
    rows, problems = [], []
    for committed in sorted((REPO / "leaderboard" / "results").glob("*/*.json")):
        rel = committed.relative_to(REPO / "leaderboard" / "results")
        missing = [name for name in ("local", "ray") if not (getattr(args, name) / "out" / rel).is_file()]
        if missing:  # a rebuild that did not finish: reported, never counted as identical
            problems.append(f"{rel}: no {' and no '.join(missing)} rebuild")
            rows.append({"result": str(rel), "missing": missing})
            continue
        ids = {name: identity((getattr(args, name) / "out" / rel).read_text()) for name in ("local", "ray")}
        ref = identity(committed.read_text())
        same_exec = ids["local"] == ids["ray"]
        as_committed, differing = {}, {}
        for name, got in ids.items():
            a, b = dict(got), dict(ref)
            as_committed[name] = (sorted(a.pop("threats")) == sorted(b.pop("threats"))) and a == b
            differing[name] = _differing(a, b)
        environment_only = {name: all(_environmental(path, ids[name], ref) for path in differing[name])
                            for name in ids}
        if not same_exec or not all(environment_only.values()):
            problems.append(str(rel))
        rows.append({"result": str(rel), "local_equals_ray": same_exec,
                     "equals_committed": as_committed["local"] and as_committed["ray"],
                     "fields_differing_from_committed": differing["local"],
                     "equals_committed_but_environment_fields": environment_only["local"] and environment_only["ray"],
                     "largest_numeric_difference_from_committed": _largest_gap(
                         {k: ids["local"].get(k) for k in ("clean", "corruptions", "adversarial", "curves")},
                         {k: ref.get(k) for k in ("clean", "corruptions", "adversarial", "curves")}),
                     "threats_order_as_committed": ids["local"]["threats"] == ref["threats"],
                     "reused": sorted(ids["local"]["provenance"]["reused"]),
                     "recomputed": [t for t in ["admission"] + ids["local"]["threats"]
                                    if t not in ids["local"]["provenance"]["reused"]]})
    stores = {}
    for name in ("local", "ray"):
        journal = Store(getattr(args, name) / "store").journal_entries()
        ids_written = [e["id"] for e in journal]
        stores[name] = {"cells_written": len(journal), "cells_written_twice": len(ids_written) - len(set(ids_written)),
                        "reused_cells": sum(e["reused"] for e in journal),
                        "computed_cells": sum(not e["reused"] for e in journal)}
    logs = {}
    for item in args.log:
        name, _, path = item.partition("=")
        logs[name] = [line for line in Path(path).read_text().splitlines()
                      if line.strip() and "cells:" not in line][-40:]
    compared = [r for r in rows if "missing" not in r]
    payload = {"results": len(rows), "compared": len(compared),
               "all_compared_identical_across_executors": all(r["local_equals_ray"] for r in compared),
               "all_compared_equal_committed": all(r["equals_committed"] for r in compared),
               "all_compared_equal_committed_but_environment_fields": all(
                   r["equals_committed_but_environment_fields"] for r in compared),
               "environment_fields": ENVIRONMENT_FIELDS, "problems": problems,
               "stores": stores, "rows": rows, "logs": logs,
               "identity": "result JSON without provenance started_at, wall_time_s, wall_time_per_threat_s, device, "
                           "platform and every section's wall_time_s; versus committed, threats compared as a set"}
    path = write("matrix_rebuild", payload)
    print(json.dumps({k: payload[k] for k in ("results", "compared", "all_compared_identical_across_executors",
                                              "all_compared_equal_committed", "problems", "stores")}, indent=1))
    print(f"written {path}")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
