"""``medbench evaluate``: run the benchmark on a zoo model or a safetensors checkpoint."""

from __future__ import annotations

import argparse
import json
import sys

from .common import (ThreatsError, add_data_args, add_device_args, fmt, fmt_ci, parse_threats,
                     protocol_from_settings)

DESCRIPTION = """Evaluate a classifier under the medbench protocol and print the results.

The model is either a zoo id (MODEL_ID, see `medbench zoo list`) or a checkpoint:
--weights FILE.safetensors --arch NAME [--arch-kwargs JSON] [--mean M --std S].
The model must take float inputs in [0, 1] and return logits; --mean/--std set the
normalisation layer inside the architecture (default 0.5/0.5)."""

EXAMPLES = """examples:
  medbench evaluate Baseline_ResNet8_ERM --dataset breastmnist
  medbench evaluate Baseline_ResNet8_ERM --dataset breastmnist --threats clean,Linf,corruptions --out results/erm.json
  medbench evaluate --weights run/model.safetensors --arch resnet8 --dataset breastmnist --out results/mine.json
  medbench evaluate MODEL --dataset pneumoniamnist --threats all --out results/r.json --plot results/r.png
  medbench evaluate Baseline_ResNet8_ERM --dataset breastmnist --threats Linf --set adversarial.subset_size=32
  medbench evaluate Baseline_ResNet8_ERM --dataset breastmnist --track lite --out results/erm.lite.json
  medbench evaluate --list-archs
  (with --out the run is resumable: re-run the same command to continue after an interruption;
   --set derives a custom protocol for a quick look: such results are marked '+custom' and never ranked;
   --track lite runs the cheap screening protocol lite2 (clean + APGD-CE/-DLR at Linf 2/255 on a fixed
   128-image subset, guarded by Square and one FGSM step; about a minute on a CPU): labelled 'lite',
   never ranked with full results)
"""


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a zoo model or a checkpoint", description=DESCRIPTION,
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_id", nargs="?", help="zoo model id (omit when using --weights)")
    p.add_argument("--dataset", help="MedMNIST dataset, e.g. breastmnist (required)")
    p.add_argument("--weights", help="safetensors checkpoint (state dict of --arch)")
    p.add_argument("--arch", help="registered architecture name, or timm/<name> for any timm model (see --list-archs)")
    p.add_argument("--list-archs", action="store_true", help="print the registered architecture names and exit")
    p.add_argument("--arch-kwargs", default="{}", help='JSON of extra builder arguments, e.g. \'{"width": 16}\'')
    p.add_argument("--mean", type=float, nargs="+", default=[0.5], help="normalisation mean, one value or per channel")
    p.add_argument("--std", type=float, nargs="+", default=[0.5], help="normalisation std, one value or per channel")
    p.add_argument("--name", default=None,
                   help="model name in tables and figures (default: the zoo id, else the architecture's class name)")
    p.add_argument("--threats", default=None,
                   help="comma-separated threat families: clean, corruptions, Linf, L2, curves, or all (default: clean; "
                        "with --track lite: all, i.e. clean and Linf); the budgets (e.g. Linf 2/255 and 4/255) are "
                        "fixed by the protocol")
    p.add_argument("--track", choices=("full", "lite"), default="full",
                   help="full: the benchmark protocol (default); lite: the cheap screening protocol lite2 "
                        "(fixed subset, APGD-CE/-DLR with a Square and FGSM masking guard; results labelled lite, "
                        "never ranked with full ones)")
    p.add_argument("--size", type=int, default=28, help="image size track: 28 (default), 64, 128, 224")
    p.add_argument("--out", help="write the result JSON here (and make the run resumable)")
    p.add_argument("--plot", metavar="FILE", help="also save an overview figure (.png, .svg or .pdf)")
    p.add_argument("--reference", help="reference model's result JSON, for corruption BE / rBE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="protocol_set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one protocol value (dotted key, e.g. adversarial.subset_size=32); repeatable; "
                        "the result is marked as a custom protocol and never ranked")
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
    from ..models.architectures import build_architecture
    from ..data import get_spec
    from ..models.weights import load_weights

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


def _threat_list(args: argparse.Namespace, proto) -> list[str]:
    """Validate --threats against the dataset before any work starts; the expanded list of threats."""
    from ..attacks.autoattack import UnsupportedTaskError, check_supported
    from ..data import get_spec
    from ..evaluate import protocol_threats

    budgets = {norm: [t["label"] for t in entries] for norm, entries in proto["adversarial"]["threats"].items()}
    if proto.get("curves.apgd_eps_255"):
        budgets["curves"] = [f"up to {max(proto['curves']['apgd_eps_255'])}/255"]
    threats = args.threats if args.threats is not None else ("all" if proto.track == "lite" else "clean")
    try:
        names = parse_threats(threats, budgets)
    except ThreatsError as exc:
        raise UsageError(str(exc)) from None
    spec = get_spec(args.dataset)
    out: list[str] = []
    for name in names:
        out.extend(protocol_threats(spec, proto) if name == "all" else [name])
    defined = proto.get("threats")
    for name in out:
        if defined and name not in defined:
            raise UsageError(f"--threats {name}: the {proto.track} track (protocol {proto.version}) evaluates "
                             f"{', '.join(defined)} only. Fix: --threats {','.join(defined)} (or all), or drop "
                             "--track lite for the full protocol.")
        norm = {"Linf": "Linf", "L2": "L2", "curves": "Linf"}.get(name)
        if norm:
            try:
                check_supported(spec, norm, proto)
            except UnsupportedTaskError as exc:
                raise UsageError(f"--threats {name}: {exc}") from None
    return list(dict.fromkeys(["clean", *out]))


class UsageError(Exception):
    """A bad command-line value: printed as an error with exit status 2."""


def _run(args: argparse.Namespace) -> int:
    if args.list_archs:
        from ..models.architectures import list_architectures
        from ..models.timm_support import TimmKwargs

        print("\n".join(list_architectures()))
        print("timm/<name>: any model of timm.list_models(), e.g. timm/resnet18, timm/vit_tiny_patch16_224, "
              "timm/mobilenetv3_small_050 (never pretrained; weights come from --weights). Accepted --arch-kwargs: "
              + ", ".join(sorted(TimmKwargs.model_fields)))
        return 0
    if not args.dataset:
        print("error: --dataset is required, e.g. --dataset breastmnist (see `medbench data info`).", file=sys.stderr)
        return 2
    if bool(args.model_id) == bool(args.weights):
        print("error: give either a zoo MODEL_ID or --weights FILE --arch NAME (not both, not neither).", file=sys.stderr)
        return 2
    if args.weights and not args.arch:
        print("error: --weights needs --arch NAME (see `medbench evaluate --list-archs`).", file=sys.stderr)
        return 2
    proto = protocol_from_settings(args.protocol_set, args.track)
    try:
        threats = _threat_list(args, proto)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from ..evaluate import benchmark
    from ..models.weights import sha256sum
    from .estimate import estimate_text

    if args.weights:
        model, sha, model_id = build_checkpoint_model(args), sha256sum(args.weights), args.name
    else:
        model, sha, model_id = args.model_id, None, args.name
    if not args.quiet and not args.protocol_set and proto.track == "full":
        text = estimate_text(args.dataset.lower(), args.size, [t for t in threats], checks=not args.no_checks)
        if text:
            print(text, file=sys.stderr)
    result = benchmark(model, args.dataset, threats=threats, size=args.size, device=args.device,
                       batch_size=args.batch_size, data_root=args.data_root, seed=args.seed, protocol=proto,
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
    print(f"{result.model_id or 'unnamed model'} on {result.dataset} ({result.size}px, {result.task}), "
          f"protocol {p.protocol_version}, {p.device}, {p.wall_time_s:.1f}s")
    if result.track == "lite":
        print("LITE TRACK: a cheap screening evaluation (fixed subset, APGD-CE/-DLR, Square and FGSM guards); its "
              "numbers are not the "
              "benchmark's and are never ranked with full results.")
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
        print_corruptions(result.corruptions)
    for label, adv in result.adversarial.items():
        print(f"\n{label}: robust balanced accuracy {fmt_ci(adv.robust_balanced_accuracy, adv.robust_balanced_accuracy_ci)}, "
              f"robust accuracy {fmt(adv.robust_accuracy)} (n={adv.subset.n}, attacks {', '.join(adv.config.attacks)})")
    if result.curves:
        cv = result.curves  # (the lite track runs one FGSM point and no APGD curve)
        apgd = pd.Series({round(pt.x * 255, 2): pt.balanced_accuracy for pt in cv.apgd_ce}, name="APGD-CE BA")
        fgsm = pd.Series({round(pt.x * 255, 2): pt.balanced_accuracy for pt in cv.fgsm}, name="FGSM BA")
        df = pd.concat([apgd, fgsm], axis=1).rename_axis("eps*255").reset_index()
        print("\ncurves\n" + df.to_string(index=False, na_rep="-"))
    if result.checks:
        print("\nchecks")
        for v in result.checks:
            print(f"  [{'pass' if v.passed else 'FAIL'}] {v.kind:<9} {v.name}: {v.message}")
    if result.skipped:
        print("\nskipped")
        for threat, why in result.skipped.items():
            print(f"  {threat}: {why}")
    if not result.admitted and not result.admission_checked:
        print(f"\nNOT ADMITTED: {result.not_admitted_because[0]}.")
    elif not result.admitted:
        print("\nNOT ADMITTED: this result is never ranked (see the failed admission checks above).")
    elif not result.reliable:
        print("\nEVALUATION UNRELIABLE: a sanity check failed (see above), so this result is not ranked until a "
              "stronger or adaptive evaluation clears it.")


def print_corruptions(cr) -> None:
    """The corruption block: balanced accuracy per corruption, and BE / rBE where they are defined."""
    be = {r.corruption: r.be for r in cr.relative_errors}
    rbe = {r.corruption: r.rbe for r in cr.relative_errors}
    severities = sorted({c.severity for c in cr.cells})
    print(f"\ncorruptions ({cr.suite}: {len(cr.per_corruption)} corruptions x {len(severities)} severities, "
          f"n={len(cr.cells)} cells): mean balanced accuracy {fmt(cr.balanced_accuracy)}")
    cols = ["balanced acc."] + (["BE"] if any(v is not None for v in be.values()) else []) \
        + (["rBE"] if any(v is not None for v in rbe.values()) else [])
    width = max(len(k) for k in cr.per_corruption) if cr.per_corruption else 10
    print(f"  {'corruption':<{width}}  " + "  ".join(f"{c:>13}" for c in cols))
    for name, ba in cr.per_corruption.items():
        vals = [fmt(ba)] + ([fmt(be.get(name))] if "BE" in cols else []) + ([fmt(rbe.get(name))] if "rBE" in cols else [])
        print(f"  {name:<{width}}  " + "  ".join(f"{v:>13}" for v in vals))
    n = len(cr.relative_errors)
    if n:
        print(f"  mean BE {fmt(cr.be)} over the {cr.be_defined} of {n} corruptions where it is defined, mean rBE "
              f"{fmt(cr.rbe)} over {cr.rbe_defined} of {n} (against {cr.reference_model}; '-' where undefined: "
              "the reference barely degrades there, see result.corruptions.relative_errors)")
    else:
        print(f"  BE / rBE (MedMNIST-C's errors relative to the pinned reference model): "
              f"{cr.be_rbe_note or 'not computed'}")
