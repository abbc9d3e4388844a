"""``medbench evaluate``: run the benchmark on a zoo model or a safetensors checkpoint."""

from __future__ import annotations

import argparse
import json
import sys

from .common import add_data_args, add_device_args, fmt, fmt_ci

DESCRIPTION = """Evaluate a classifier under the medbench protocol and print the results.

The model is either a zoo id (MODEL_ID, see `medbench zoo list`) or a checkpoint:
--weights FILE.safetensors --arch NAME [--arch-kwargs JSON] [--mean M --std S].
The model must take float inputs in [0, 1] and return logits; --mean/--std set the
normalisation layer inside the architecture (default 0.5/0.5)."""

EXAMPLES = """examples:
  medbench evaluate Baseline_ResNet8_ERM --dataset breastmnist
  medbench evaluate --weights run/model.safetensors --arch resnet8 --dataset breastmnist --out result.json
  medbench evaluate MODEL --dataset pneumoniamnist --threats clean,corruptions,Linf,L2,curves --out r.json
  (with --out the run is resumable: re-run the same command to continue after an interruption)
"""


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a zoo model or a checkpoint", description=DESCRIPTION,
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_id", nargs="?", help="zoo model id (omit when using --weights)")
    p.add_argument("--dataset", required=True, help="MedMNIST dataset, e.g. breastmnist")
    p.add_argument("--weights", help="safetensors checkpoint (state dict of --arch)")
    p.add_argument("--arch", help="registered architecture name (see --list-archs)")
    p.add_argument("--arch-kwargs", default="{}", help='JSON of extra builder arguments, e.g. \'{"width": 16}\'')
    p.add_argument("--mean", type=float, nargs="+", default=[0.5], help="normalisation mean, one value or per channel")
    p.add_argument("--std", type=float, nargs="+", default=[0.5], help="normalisation std, one value or per channel")
    p.add_argument("--threats", default="clean",
                   help="comma-separated: clean, corruptions, Linf, L2, curves, or all (default: clean)")
    p.add_argument("--size", type=int, default=28, help="image size track: 28 (default), 64, 128, 224")
    p.add_argument("--out", help="write the result JSON here (and make the run resumable)")
    p.add_argument("--plot", metavar="FILE", help="also save an overview figure (.png, .svg or .pdf)")
    p.add_argument("--reference", help="reference model's result JSON, for corruption BE / rBE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-checks", action="store_true", help="skip admission and sanity checks (results then unranked)")
    p.add_argument("--allow-unranked", action="store_true",
                   help="compute the result of a model that fails an admission check (e.g. near-constant "
                        "predictions) instead of stopping; it is marked not admitted and its attacks are skipped")
    p.add_argument("--json", action="store_true", help="print the result JSON instead of tables")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_args(p)
    add_data_args(p)
    p.set_defaults(func=_run)


def build_checkpoint_model(args: argparse.Namespace):
    """Build --arch for the dataset and load --weights strictly."""
    from ..architectures import build_architecture
    from ..data import get_spec
    from ..weights import load_weights

    spec = get_spec(args.dataset)
    try:
        kwargs = json.loads(args.arch_kwargs)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: --arch-kwargs is not valid JSON ({exc}): {args.arch_kwargs!r}")
    mean = args.mean[0] if len(args.mean) == 1 else args.mean
    std = args.std[0] if len(args.std) == 1 else args.std
    model = build_architecture(args.arch, in_channels=spec.n_channels, num_classes=spec.num_classes,
                               mean=mean, std=std, **kwargs)
    return load_weights(model, args.weights)


def _run(args: argparse.Namespace) -> int:
    from ..evaluate import benchmark
    from ..weights import sha256sum

    if bool(args.model_id) == bool(args.weights):
        print("error: give either a zoo MODEL_ID or --weights FILE --arch NAME (not both, not neither).", file=sys.stderr)
        return 2
    if args.weights:
        if not args.arch:
            print("error: --weights needs --arch (one of `python -c \"import medbench.architectures as a; "
                  "print(a.list_architectures())\"`).", file=sys.stderr)
            return 2
        model, sha, model_id = build_checkpoint_model(args), sha256sum(args.weights), None
    else:
        model, sha, model_id = args.model_id, None, args.model_id
    result = benchmark(model, args.dataset, threats=args.threats, size=args.size, device=args.device,
                       batch_size=args.batch_size, data_root=args.data_root, seed=args.seed,
                       model_id=model_id, weights_sha256=sha, out=args.out, reference=args.reference,
                       checks=not args.no_checks, allow_unranked=args.allow_unranked, progress=not args.quiet)
    if args.json:
        print(result.to_json())
    else:
        print_result(result)
        if args.out:
            print(f"\nresult written to {args.out}")
    if args.plot:
        path = result.plot(args.plot)
        print(f"figure written to {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def print_result(result) -> None:
    """Readable tables of an EvaluationResult."""
    import pandas as pd

    p = result.provenance
    print(f"{result.model_id or 'model'} on {result.dataset} ({result.size}px, {result.task}), "
          f"protocol {p.protocol_version}, {p.device}, {p.wall_time_s:.1f}s")
    c = result.clean
    if c:
        print(f"\nclean (n={c.n}, {int(c.ci_level * 100)}% bootstrap CI)")
        rows = [("balanced accuracy", fmt_ci(c.balanced_accuracy, c.ci.get("balanced_accuracy"))),
                ("accuracy", fmt_ci(c.accuracy, c.ci.get("accuracy"))),
                ("AUC", fmt_ci(c.auc, c.ci.get("auc")))]
        for name, value in rows:
            print(f"  {name:<18} {value}")
        print("  per-class recall: " + "; ".join(f"{k}: {fmt(v)}" for k, v in c.per_class_recall.items()))
    if result.corruptions:
        cr = result.corruptions
        print(f"\ncorruptions ({cr.suite}): balanced accuracy {fmt(cr.balanced_accuracy)}, "
              f"relative robustness {fmt(cr.relative_robustness)}")
        print(pd.Series(cr.per_corruption, name="balanced accuracy").to_string())
    for label, adv in result.adversarial.items():
        print(f"\n{label}: robust balanced accuracy {fmt_ci(adv.robust_balanced_accuracy, adv.robust_balanced_accuracy_ci)}, "
              f"robust accuracy {fmt(adv.robust_accuracy)} (n={adv.subset.n}, attacks {', '.join(adv.config.attacks)})")
    if result.curves:
        cv = result.curves
        df = pd.DataFrame({"eps*255": [round(pt.x * 255, 2) for pt in cv.apgd_ce],
                           "APGD-CE BA": [pt.balanced_accuracy for pt in cv.apgd_ce],
                           "FGSM BA": [pt.balanced_accuracy for pt in cv.fgsm]})
        print("\ncurves\n" + df.to_string(index=False))
    if result.checks:
        print("\nchecks")
        for v in result.checks:
            print(f"  [{'pass' if v.passed else 'FAIL'}] {v.kind:<9} {v.name}: {v.message}")
    if result.skipped:
        print("\nskipped")
        for threat, why in result.skipped.items():
            print(f"  {threat}: {why}")
    if not result.admitted:
        print("\nNOT ADMITTED: this result is never ranked (see the failed admission checks above).")
