"""``medbench run``: evaluate registry models x datasets x threats as cached cells, locally or on Ray."""

from __future__ import annotations

import argparse
import sys

from .common import ThreatsError, add_data_args, parse_threats, protocol_from_settings

DESCRIPTION = """Evaluate many registry models at once, cell by cell.

A cell is one (model, dataset, size, threat); its id hashes the weights sha256, the data MD5, the
protocol sha256, the threat's settings and the code version (medbench version + sha256 of the
source files that compute that threat, torch and library versions). Finished cells are kept in
--store and never recomputed, so an interrupted run resumes and a repeated one computes nothing.
Each result is assembled from its cells exactly as `medbench evaluate` writes it, to
OUT/<dataset>/<model>.json. Corruption cells read the dataset's pinned reference model's cells
(BE / rBE); those are computed as well when that model is not selected."""

EXAMPLES = """examples:
  medbench run --models all --datasets breastmnist --threats clean,corruptions --out results/
  medbench run --models Baseline_ResNet8_ERM,Baseline_ResNet8_SAM --datasets breastmnist --threats all --workers 2 --out results/
  medbench run --models all --datasets all --threats clean,corruptions --executor ray --workers 2 --out results/
  medbench run --models all --datasets all --threats clean,Linf,L2,curves,corruptions --reuse leaderboard/results --out leaderboard/results
      (attack sections are carried over from the committed results where medbench.reuse proves them
       computed exactly as now, recorded in provenance.reused; everything else is recomputed)
  on a Ray cluster: `ray start --head` on one machine, `ray start --address HEAD:6379` on the others,
      then medbench run ... --executor ray --address auto (every node needs the same medbench and data)
"""


def register(sub) -> None:
    p = sub.add_parser("run", help="evaluate models x datasets x threats as cached cells (local pool or Ray)",
                       description=DESCRIPTION, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", required=True, help="comma-separated registry ids, or all")
    p.add_argument("--datasets", required=True, help="comma-separated datasets, or all (every dataset with registry models)")
    p.add_argument("--threats", default="all",
                   help="comma-separated threats: clean, corruptions, Linf, L2, curves, or all (default); a threat the "
                        "protocol does not define for a dataset (L2 on 3D data) is left out there; clean always runs")
    p.add_argument("--out", metavar="DIR", help="write results to DIR/<dataset>/<model>.json (default: only fill the store)")
    p.add_argument("--store", metavar="DIR", help="cell store (default: $MEDBENCH_CACHE/matrix or ~/.cache/medbench/matrix)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: a process pool (default, needs nothing extra); ray: Ray tasks (pip install 'medbench[ray]')")
    p.add_argument("--workers", type=int, default=1, help="cells computed at once (default 1)")
    p.add_argument("--threads-per-worker", type=int, default=1, help="torch threads in each worker (default 1)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (e.g. auto, or ray://host:10001); default: start a local Ray instance")
    p.add_argument("--max-retries", type=int, default=3, help="Ray: retries of a cell whose worker died (default 3)")
    p.add_argument("--reuse", metavar="DIR",
                   help="results folder (<dataset>/<model>.json) whose attack sections are carried over where proven "
                        "identical (medbench.reuse; recorded in provenance.reused)")
    p.add_argument("--allow-unranked", action="store_true",
                   help="write results of models that fail admission (marked not admitted, attacks skipped)")
    p.add_argument("--size", type=int, default=28, help="image size track (default 28)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=None, help="inference batch size (default: automatic)")
    p.add_argument("--set", dest="protocol_set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one protocol value (dotted key, e.g. adversarial.subset_size=32); repeatable; "
                        "the results are marked as a custom protocol and never ranked")
    p.add_argument("--recompute-damaged", action="store_true",
                   help="set aside stored cells that fail their checksum (edited, truncated, foreign files) and "
                        "compute them again; without it such cells stop the run, all of them named")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_data_args(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        names = parse_threats(args.threats)
    except ThreatsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for flag, value in (("--workers", args.workers), ("--threads-per-worker", args.threads_per_worker)):
        if value < 1:
            print(f"error: {flag} must be at least 1 (got {value}).", file=sys.stderr)
            return 2
    if args.address is not None and args.executor != "ray":
        print("error: --address names a Ray cluster; add --executor ray.", file=sys.stderr)
        return 2

    from ..errors import MedbenchError
    from ..matrix import run_matrix

    try:
        proto = protocol_from_settings(args.protocol_set)
    except MedbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = run_matrix(args.models, args.datasets, names, executor=args.executor, workers=args.workers,
                        store=args.store, out=args.out, size=args.size, seed=args.seed, device=args.device,
                        batch_size=args.batch_size, data_root=args.data_root, reuse=args.reuse,
                        allow_unranked=args.allow_unranked, address=args.address, max_retries=args.max_retries,
                        threads_per_worker=args.threads_per_worker, progress=not args.quiet, protocol=proto,
                        recompute_damaged=args.recompute_damaged)
    for dataset, threats in report.dropped.items():
        print(f"note: protocol does not define {', '.join(threats)} for {dataset}; left out there", file=sys.stderr)
    print(f"{report.cells} cells: {report.computed} computed, {report.reused} reused from earlier results, "
          f"{report.stored} already stored, {report.skipped} skipped (not admitted); "
          f"{len(report.results)} results, {len(report.refused)} models not admitted, {len(report.failed)} failed, "
          f"in {report.wall_time_s:.1f}s")
    for (dataset, model_id), path in report.results.items():
        if path is not None:
            print(f"  {dataset}/{model_id} -> {path}")
    for (dataset, model_id), why in report.refused.items():  # an outcome, not a failure (exit code 0)
        print(f"not admitted, no result written: {dataset}/{model_id}: {why} (--allow-unranked writes it, "
              "never ranked)", file=sys.stderr)
    for (dataset, model_id), why in report.failed.items():
        print(f"failed {dataset}/{model_id}: {why}", file=sys.stderr)
    return 0 if report.ok else 1
