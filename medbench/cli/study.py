"""``medbench study NAME --dataset D``: run a study from the literature end to end; ``medbench study list``."""

from __future__ import annotations

import argparse

from .common import add_data_args

# Kept here (not imported from medbench.studies) so that building the parser imports no torch.
STUDY_HELP = {
    "nonrobust-features": "do nonrobust features alone predict the label? (Mouton et al.; Ilyas et al.)",
    "explanation-stability": "are saliency maps stable across seeds, noise and attacks? (Thibeau-Sutre et al.)",
    "architectures": "which architectures are robust? robust BA by family and size (RobMedNAS)",
}
DEFAULT_OUT = "medbench-studies"  # the user's results, in the working directory (--publish: the leaderboard's)


class _StudyParser(argparse.ArgumentParser):
    """Adds the study's own options (from its typed options model) to its --help, importing it only then."""

    study_name: str = ""  # empty for `medbench study list`

    def format_help(self) -> str:
        text = super().format_help()
        if not self.study_name:
            return text
        try:
            from ..studies import get_study

            study = get_study(self.study_name)
        except Exception as exc:  # noqa: BLE001 - help must print even when the study cannot load
            return text + f"\n(the study's options could not be listed: {exc})\n"
        lines = [f"\n{study.title}\n  question: {study.question}\n  follows:  {study.paper}"]
        fields = study.options.model_fields
        if fields:
            lines.append("\nstudy options (--set NAME=VALUE, repeatable):")
            for key, f in fields.items():
                lines.append(f"  {key} (default {f.default!r}): {f.description or ''}")
        if study.estimate is not None:
            guess = study.estimate("breastmnist", 28, study.options())
            lines.append(f"\nhow long (breastmnist, default options): {guess or 'no measurement committed'}")
        return text + "\n".join(lines) + "\n"


def register(sub) -> None:
    p = sub.add_parser("study", help="studies from the literature as benchmark tracks (nonrobust features, ...)",
                       description="Run a study end to end on CPU for the reference models; its typed JSON result "
                                   f"goes to --out (default ./{DEFAULT_OUT}/). Maintainers publish with --publish "
                                   "(into the leaderboard's studies/, which the site shows on a page per study).",
                       epilog="examples:\n  medbench study list\n"
                              "  medbench study nonrobust-features --dataset breastmnist\n"
                              "  medbench study explanation-stability --dataset breastmnist --set n_images=16 "
                              "--set 'retrain_seeds=[]'\n"
                              "  medbench study architectures --dataset breastmnist --out results/studies",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ssub = p.add_subparsers(dest="study_command", metavar="STUDY", required=True, parser_class=_StudyParser)
    ls = ssub.add_parser("list", help="the studies and the results committed for each")
    ls.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                    help=f"your results folder, listed beside the published results (default {DEFAULT_OUT})")
    ls.set_defaults(func=_list)
    for name, text in STUDY_HELP.items():
        _add_study_parser(ssub, name, text).set_defaults(func=_run, study=name)


def _add_study_parser(ssub, name: str, text: str) -> argparse.ArgumentParser:
    s = ssub.add_parser(name, help=text, description=text,
                        epilog=f"example:\n  medbench study {name} --dataset breastmnist",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    s.study_name = name
    s.add_argument("--dataset", required=True, help="dataset (e.g. breastmnist)")
    s.add_argument("--size", type=int, default=28, help="image size (default 28)")
    s.add_argument("--seed", type=int, default=0, help="seed of everything random in the study (default 0)")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                       help=f"where the result JSON goes: DIR/{name}/DATASET_SIZEpx.json (default ./{DEFAULT_OUT})")
    where.add_argument("--publish", action="store_true",
                       help="maintainers: write into the leaderboard's studies/ folder ($MEDBENCH_LEADERBOARD, else "
                            "this checkout's leaderboard/), which the site publishes")
    s.add_argument("--work-dir", default=None, metavar="DIR",
                   help="scratch for trained models, kept between runs (default $MEDBENCH_CACHE/studies/NAME)")
    s.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="options",
                   help="a study option (see below); repeatable")
    s.add_argument("--no-progress", action="store_true", help="no progress output")
    s.add_argument("--rederive", action="store_true",
                   help="recompute the conclusions of the result already in --out (with --publish: the published one) "
                        "from what it stores (its options and seed; nothing is trained): the current protocol's "
                        "admission gate, tests and claims")
    add_data_args(s)
    return s


def _options(pairs: list[str]) -> dict:
    from ..errors import SettingError
    from ..safe_yaml import YamlError, load_yaml_text

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SettingError(f"--set {pair!r}: write NAME=VALUE, e.g. --set n_images=16")
        try:
            out[key.strip()] = load_yaml_text(value, where="the value") if value.strip() else ""
        except YamlError as exc:
            raise SettingError(f"--set {pair!r}: {exc} (not valid YAML).") from None
    return out


def output_folder(args: argparse.Namespace):
    """Where a study writes: the leaderboard's studies/ with --publish, else --out (./medbench-studies)."""
    from pathlib import Path

    from ..paths import leaderboard_root

    return leaderboard_root() / "studies" if args.publish else Path(args.out)


def _run(args: argparse.Namespace) -> int:
    import sys

    from ..studies import get_study, result_path, run_study, validate_options

    out = output_folder(args)
    options, study = _options(args.options), get_study(args.study)
    earlier = result_path(out, args.study, args.dataset, args.size) if args.rederive else None
    if study.estimate is not None and earlier is None:
        print(study.estimate(args.dataset, args.size, validate_options(study, options))
              or "expected duration: unknown (no committed measurement)", file=sys.stderr, flush=True)
    result = run_study(args.study, args.dataset, size=args.size, seed=args.seed, data_root=args.data_root,
                       out=out, work_dir=args.work_dir, options=options,
                       progress=not args.no_progress, rederive_from=earlier)
    print(f"{result.study} on {result.dataset} ({result.size} px): {result.summary}")
    for f in result.findings:
        ci = f" [{f.ci.low:.3f}, {f.ci.high:.3f}]" if f.ci and f.ci.low is not None else ""
        value = "-" if f.value is None else f"{f.value:.3f}"
        ref = f" vs {f.reference_label or 'reference'} {f.reference:.3f}" if f.reference is not None else ""
        test = f"; {f.test.name}: {f.test.p_text}" if f.test and f.test.p_value is not None else ""
        print(f"  {f.label}: {value}{ci}{ref}{test}")
    for a in result.admissions:
        print(f"  gate {'admits' if a.admitted else 'REFUSES'} {a.model}: BA {a.balanced_accuracy:.3f}, "
              f"{a.majority_share:.1%} predicted {a.majority_class}" + ("" if a.admitted else f" ({a.reason})"))
    for c in result.claims:
        p = f", {c.p_text}" if c.p_value is not None else ""
        print(f"  claim [{c.verdict}] {c.claim}: {c.here or ''}{p} ({c.reason})")
    return 0


def _list(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..paths import leaderboard_root
    from ..studies import get_study, list_studies

    def stems(folder: Path) -> str:
        return ", ".join(f.stem for f in sorted(folder.glob("*.json")))

    for name in list_studies():
        study = get_study(name)
        print(f"{name}: {study.title}\n  {study.question}\n"
              f"  published: {stems(leaderboard_root() / 'studies' / name) or 'none'}")
        yours = stems(Path(args.out) / name)
        if yours:
            print(f"  yours ({Path(args.out) / name}): {yours}")
    return 0
