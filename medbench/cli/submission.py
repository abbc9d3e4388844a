"""``medbench submission``: validate submission files (CI on pull requests) and accept them into the zoo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_data_args

DESCRIPTION = """Submissions by pull request (see submissions/README.md).

validate: schema, unique id, licence, links, paths, size limits; weights reachable with the pinned
sha256 and size, safetensors, strict load, parameter count; admission checks; with --reproduce the
claimed numbers are re-measured (clean: full test split, within 0.5 points; robust: a stratified
subset, the claim inside its 95% bootstrap interval). Exit code 0 only when every check passes.
An attack submission (submissions/attacks/<name>.yaml with its .npz, see submissions/attacks/README.md)
is verified example by example against the zoo model's pinned weights; when it passes, its record is
written to <records>/attacks/<dataset>/ and the change of the best-known column is printed.

accept: validate, run the full protocol, move the entry into model_zoo/<dataset>/, write
leaderboard/results/<dataset>/<id>.json and rebuild the site."""

EXAMPLES = """examples:
  medbench submission validate submissions/Smith2026Trades.yaml
  medbench submission validate submissions/*.yaml --reproduce --report report.md
  medbench submission validate submissions/attacks/Smith2026FMN.yaml --records leaderboard
  medbench submission accept submissions/Smith2026Trades.yaml
"""


def register(sub) -> None:
    p = sub.add_parser("submission", help="validate or accept model submissions", description=DESCRIPTION,
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = p.add_subparsers(dest="submission_command", metavar="SUBCOMMAND")
    v = cmds.add_parser("validate", help="check submission files; exit 0 only if all pass",
                        description="Check submission files (models, or attack files in submissions/attacks/) "
                                    "and write a markdown report; a verified attack file's record is written "
                                    "under --records.")
    v.add_argument("files", nargs="+", metavar="FILE",
                   help="submissions/<ModelId>.yaml or submissions/attacks/<name>.yaml file(s)")
    v.add_argument("--reproduce", action="store_true", help="re-measure the claimed numbers")
    v.add_argument("--report", metavar="FILE.md", help="write the markdown report (pull-request comment) here")
    v.add_argument("--subset-size", type=int, default=200,
                   help="stratified test subset for the robust re-measurement and admission checks (default 200)")
    v.add_argument("--n-iter", type=int, default=None, help="attack iterations (default: the protocol's 100)")
    v.add_argument("--square-queries", type=int, default=None, help="Square queries (default: the protocol's)")
    v.add_argument("--records", metavar="DIR",
                   help="leaderboard folder that receives verified attack records (default: the leaderboard root)")
    v.add_argument("--run-by-medbench", action="store_true",
                   help="label verified attack files as extra attacks run by the maintainers (medbench attack run), "
                        "not as submissions")
    v.add_argument("--results", metavar="DIR",
                   help="results folder an attack file is checked against (default: <records>/results with "
                        "--records, else <leaderboard>/results)")
    _common(v)
    v.set_defaults(func=_validate)
    a = cmds.add_parser("accept", help="move a validated submission into the zoo, evaluate it, rebuild the site",
                        description="Accept a submission: full protocol run, registry entry, results, site.")
    a.add_argument("file", metavar="FILE", help="submissions/<ModelId>.yaml")
    a.add_argument("--quick", action="store_true",
                   help="reduced protocol (64-image subset, 10 iterations; marked +custom) to try the pipeline")
    a.add_argument("--threats", default="all", help="threats to run (default: all)")
    a.add_argument("--results", metavar="DIR", help="results folder (default: leaderboard/results)")
    a.add_argument("--site", metavar="DIR", help="site folder to rebuild (default: site)")
    a.add_argument("--reference", metavar="FILE.json",
                   help="corruption reference result for BE / rBE (default: the dataset's ERM baseline result)")
    _common(a)
    a.set_defaults(func=_accept)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", metavar="DIR", help="model registry (default: the zoo's model_zoo/)")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    add_data_args(p)


def _validate(args: argparse.Namespace) -> int:
    from ..submission import ReproduceSettings, combine_markdown, looks_like_attack_submission, validate_submission

    settings = ReproduceSettings(subset_size=args.subset_size, n_iter=args.n_iter, square_queries=args.square_queries)
    reports = []
    for f in args.files:
        if looks_like_attack_submission(f):
            report = _validate_attack(f, args)
        else:
            report = validate_submission(f, registry=args.registry, reproduce=args.reproduce, settings=settings,
                                         data_root=args.data_root, device=args.device)
            print(report.to_text())
        reports.append(report)
    if args.report:
        try:
            Path(args.report).write_text(combine_markdown(reports), encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write the report to {args.report}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"report written to {args.report}")
    ok = all(r.passed for r in reports)
    print(f"{sum(r.passed for r in reports)}/{len(reports)} submission(s) pass", file=sys.stderr)
    return 0 if ok else 1


def _validate_attack(path: str, args: argparse.Namespace):
    """Verify one attack file; when it passes, write its record and print what it changed."""
    from ..paths import leaderboard_root
    from ..submission import record_verified_attack, verify_attack_submission

    results = args.results or (Path(args.records) / "results" if args.records else None)
    report = verify_attack_submission(path, registry=args.registry, results=results, data_root=args.data_root,
                                      device=args.device, kind="maintainer" if args.run_by_medbench else "submission")
    print(report.to_text())
    if report.passed:
        done = record_verified_attack(report, args.records or leaderboard_root())
        report.notes.append(done.summary())
        report.notes += [f"stored record left out: {problem}" for problem in done.skipped]
        print("\n".join(f"  {note}" for note in report.notes))
    return report


def _accept(args: argparse.Namespace) -> int:
    from ..submission import accept_submission

    done = accept_submission(args.file, registry=args.registry, results=args.results, site=args.site,
                             quick=args.quick, threats=args.threats, data_root=args.data_root, device=args.device,
                             reference=args.reference)
    r = done.result
    print(f"accepted {r.model_id} ({r.dataset}): entry {done.entry_path}, result {done.result_path}, "
          f"site {done.site_dir}")
    if r.clean:
        print(f"  clean balanced accuracy {r.clean.balanced_accuracy:.4f}")
    for label, adv in r.adversarial.items():
        print(f"  {label}: robust balanced accuracy {adv.robust_balanced_accuracy:.4f}")
    return 0
