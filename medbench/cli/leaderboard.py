"""``medbench leaderboard build``: render the static leaderboard site from the registry and results."""

from __future__ import annotations

import argparse
import os
import sys


def register(sub) -> None:
    p = sub.add_parser("leaderboard", help="build the static leaderboard site",
                       description="Build the static leaderboard site (HTML, CSV, JSON) from the model registry "
                                   "and the harness's result records.")
    lsub = p.add_subparsers(dest="leaderboard_command", metavar="ACTION", required=True)
    b = lsub.add_parser("build", help="render model_zoo/ + leaderboard/results/ into a static site",
                        description="Render the registry and results into a static site that works from any static "
                                    "host or from disk. Deterministic: the same inputs give byte-identical files.")
    b.add_argument("--out", default="site", metavar="DIR",
                   help="output folder (default: ./site); must be empty, new, or a previous build")
    b.add_argument("--registry", default=None, metavar="DIR",
                   help="model registry folder (default: the registry models load from: $MEDBENCH_ZOO, else the "
                        "installed package's or this checkout's model_zoo/)")
    b.add_argument("--results", default=None, metavar="DIR",
                   help="results folder (default: results/ of $MEDBENCH_LEADERBOARD, else of this checkout's "
                        "leaderboard/)")
    b.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="load and render datasets in N processes (default: one per CPU; the output is identical "
                        "whatever N; small sites are built in one process)")
    b.add_argument("--full", action="store_true",
                   help="render every page (default: only what changed since the last build into --out)")
    b.add_argument("--strict", action="store_true", help="exit with status 1 if any input file was skipped")
    b.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..site import build_site

    # A mistyped folder would otherwise build (and overwrite --out with) an empty leaderboard.
    for flag, folder in (("--registry", args.registry), ("--results", args.results)):
        if folder is not None and not Path(folder).is_dir():
            print(f"error: {flag} {folder} is not a folder; nothing was built and {args.out} is unchanged. "
                  f"Fix: point {flag} at an existing folder (or leave it out for this checkout's).", file=sys.stderr)
            return 1
    if args.jobs is not None and args.jobs < 1:
        print(f"error: --jobs {args.jobs}: give 1 or more processes (or leave it out for one per CPU)", file=sys.stderr)
        return 2
    jobs = args.jobs or os.cpu_count() or 1
    report = build_site(args.out, args.registry, args.results, jobs=jobs, full=args.full)
    for line in report.problems:
        print(f"warning: {line}", file=sys.stderr)
    print(f"built {report.pages} pages ({report.files} files) into {report.out}")
    if report.kept_pages or not report.rendered_units:  # an incremental rebuild: say what it did
        print(f"rendered again: {', '.join(report.rendered_units) or 'no dataset'}; model pages kept as they were: "
              f"{report.kept_pages}")
    return 1 if args.strict and report.problems else 0
