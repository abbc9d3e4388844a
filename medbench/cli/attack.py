"""``medbench attack run|list``: extra attacks (FMN, DDN, AutoAttack) written as verifiable attack files."""

from __future__ import annotations

import argparse

from .common import add_data_args

RUN_EPILOG = """examples:
  medbench attack run Baseline_ResNet8_PGDAT --dataset breastmnist --threat Linf-2/255 --attack fmn --steps 5 --out attacks/
  medbench attack run Baseline_ResNet8_ERM --dataset breastmnist --threat Linf-2/255 --attack fmn --steps 5 --minimum-norm --out attacks/
  medbench attack run Baseline_ResNet8_ERM --dataset breastmnist --threat L2-0.25 --attack ddn --steps 5 --all-points --out attacks/

By default only the subset points that the committed AutoAttack result
(leaderboard/results/<dataset>/<model>.json) left robust are attacked; --all-points attacks every point
of the threat's protocol subset, and --minimum-norm (which implies it) also writes <name>.minnorm.json:
the smallest breaking norm per point, the robust-accuracy-vs-eps curve and the median with its CI.
The files are an attack submission (AttackSubmission): check them with medbench submission validate.
"""


def register(sub) -> None:
    p = sub.add_parser("attack", help="extra attacks (FMN, DDN) as verifiable attack files",
                       description="Attack plugins beyond AutoAttack: minimum-norm attacks from foolbox, run on a "
                                   "threat's protocol subset and written in the attack-submission format.")
    asub = p.add_subparsers(dest="attack_command", metavar="ACTION", required=True)

    run = asub.add_parser("run", help="run one attack plugin on a zoo model for one threat", epilog=RUN_EPILOG,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("model_id", metavar="MODEL", help="a zoo model id")
    run.add_argument("--dataset", required=True)
    run.add_argument("--threat", required=True, help="a threat label of the protocol, e.g. Linf-2/255 or L2-0.25")
    run.add_argument("--attack", default="fmn", help="plugin name (medbench attack list); default fmn")
    run.add_argument("--out", required=True, metavar="DIR",
                     help="folder for <name>.npz, <name>.yaml (and <name>.minnorm.json)")
    run.add_argument("--steps", type=int, default=100, help="attack iterations (default 100)")
    run.add_argument("--all-points", action="store_true", help="attack every subset point, not only those "
                                                               "AutoAttack left robust")
    run.add_argument("--minimum-norm", action="store_true", help="also write the minimum-norm curve (implies "
                                                                  "--all-points)")
    run.add_argument("--size", type=int, default=28, help="image size (default 28)")
    run.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda if available)")
    run.add_argument("--batch-size", type=int, default=None,
                     help="points per attack call (default: 250 for autoattack, its chunk size; else 64)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    add_data_args(run)
    run.set_defaults(func=_run)

    ls = asub.add_parser("list", help="the attack plugins", epilog="examples:\n  medbench attack list",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    ls.set_defaults(func=_list)


def _list(args: argparse.Namespace) -> int:
    from ..attacks.plugins import list_attacks

    for name, description in list_attacks().items():
        print(f"{name:<12} {description}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..attacks.extra import file_name, run_extra_attack, write_attack_files
    from ..protocol import load_protocol

    protocol = load_protocol()
    run = run_extra_attack(args.model_id, args.dataset, args.threat, args.attack, steps=args.steps,
                           all_points=args.all_points or args.minimum_norm, size=args.size, data_root=args.data_root,
                           device=args.device, batch_size=args.batch_size, progress=not args.quiet, protocol=protocol,
                           minimum_norm=args.minimum_norm)
    out = run.output
    print(f"{run.attack.display_name} on {run.model_id} ({run.dataset}) {run.threat}: attacked {run.why_attacked}.")
    print(f"  broke {len(run.broken_indices)} of {int(run.attacked.sum())} attacked points in "
          f"{run.wall_time_s:.1f} s (inside the ball, misclassified, finite logits)")
    if run.lost_to_ball:
        print(f"  {run.lost_to_ball} misclassified outputs did not survive the float64 ball check")
    if out.nonfinite_outputs or not out.finite.all():
        print(f"  warning: the model returned {out.nonfinite_outputs} non-finite output rows during the attack; "
              f"{int((~out.finite).sum())} points with non-finite logits were not counted as broken")
    if len(run.broken_indices):
        npz, meta = write_attack_files(run, args.out)
        print(f"  wrote {meta} and {npz.name}; check with: medbench submission validate {meta}")
    else:
        print("  no breaks: no attack file written")
    if args.minimum_norm:
        name = file_name(run.model_id, run.dataset, run.attack.name, run.threat)
        _write_minimum_norm(run, protocol, Path(args.out) / f"{name}.minnorm.json")
    return 0


def _write_minimum_norm(run, protocol, path) -> None:
    from ..attacks.extra import committed_result
    from ..attacks.minimum_norm import compare_with_apgd, minimum_norm_curve

    curve = minimum_norm_curve(run, protocol)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(curve.model_dump_json(indent=1))
    median = "inf" if curve.median is None else f"{curve.median:.5f}"
    low, high = (("inf" if v is None else f"{v:.5f}") for v in (curve.median_ci.low, curve.median_ci.high))
    print(f"  median smallest breaking {run.norm} norm {median} [{low}, {high}]; wrote {path}")
    for p in curve.curve:
        print(f"    eps {p.eps:.5f}: robust accuracy {p.robust_accuracy:.3f}, balanced {p.robust_balanced_accuracy:.3f}")
    result = committed_result(run.dataset, run.model_id)
    if run.norm != "Linf" or result is None or result.curves is None:
        return
    try:
        comparison = compare_with_apgd(curve, result.curves)
    except ValueError as exc:
        print(f"  no comparison with the committed APGD-CE curve: {exc}")
        return
    verdict = "at or below it at every eps" if comparison.consistent else "ABOVE it somewhere: weaker there"
    print(f"  {comparison.attack} against the committed APGD-CE curve ({verdict}):")
    for p in comparison.points:
        print(f"    eps {p.eps:.5f}: APGD {p.apgd_accuracy:.3f}, {comparison.attack} {p.minimum_norm_accuracy:.3f}, "
              f"either {p.combined_accuracy:.3f} (broken only by {comparison.attack}: "
              f"{p.broken_only_by_minimum_norm}, only by APGD: {p.broken_only_by_apgd})")
