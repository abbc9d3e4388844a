"""``medbench corruptions list|build|show``: the corruption suites, their cached test sets, a visual grid."""

from __future__ import annotations

import argparse

from .common import add_data_args


def register(sub) -> None:
    p = sub.add_parser("corruptions", help="MedMNIST-C / 3D corruption suites: parameters, cached sets, PNG grid",
                       description="Build, verify and look at the corrupted test sets of the benchmark protocol. "
                                   "Sets are cached under $MEDBENCH_CACHE/corruptions (default ~/.cache/medbench).")
    csub = p.add_subparsers(dest="corruptions_command", metavar="ACTION", required=True)

    ls = csub.add_parser("list", help="the corruption suites; with DATASET, its parameters per severity at SIZE",
                         epilog="examples:\n  medbench corruptions list\n  medbench corruptions list breastmnist --size 28",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    ls.add_argument("dataset", nargs="?", help="a dataset (default: list the suites and the datasets they cover)")
    ls.add_argument("--size", type=int, default=28, help="image size (default 28)")
    ls.set_defaults(func=_list)

    build = csub.add_parser("build", help="generate (or verify) the dataset's corrupted test sets",
                            epilog="examples:\n  medbench corruptions build breastmnist --only pixelate,motion_blur",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    build.add_argument("dataset")
    build.add_argument("--size", type=int, default=28, help="image size (default 28)")
    build.add_argument("--only", default=None, metavar="NAMES", help="comma-separated subset of corruptions")
    add_data_args(build)
    build.set_defaults(func=_build)

    show = csub.add_parser("show", help="write a PNG grid of one test image under every corruption and severity",
                           epilog="examples:\n  medbench corruptions show retinamnist --out results/grid.png",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("dataset")
    show.add_argument("--size", type=int, default=28, help="image size (default 28)")
    show.add_argument("--index", type=int, default=0, help="test image to show (default 0)")
    show.add_argument("--out", default=None, metavar="PNG", help="output file (default <dataset>_<size>_corruptions.png)")
    add_data_args(show)
    show.set_defaults(func=_show)


def _protocol(only: str | None):
    from ..protocol import load_protocol

    proto = load_protocol()
    if only:
        proto = proto.derive(**{"corruptions.include": [c.strip() for c in only.split(",") if c.strip()]})
    return proto


def _list(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..corruptions.params import corruption_parameters, suite_name
    from ..data import get_spec

    if args.dataset is None:
        return _list_suites()
    spec = get_spec(args.dataset)
    spec.check_size(args.size)
    params = corruption_parameters(spec, args.size, _protocol(None))
    rows = [{"corruption": name, **{f"severity {i}": ", ".join(f"{k}={v}" for k, v in p.items())
                                    for i, p in enumerate(plist, 1)}} for name, plist in params.items()]
    print(f"{spec.name} at {args.size} px, suite {suite_name(spec)}:")
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _list_suites() -> int:
    """Every corruption suite of the protocol: its corruptions and the datasets it covers."""
    from ..corruptions.params import corruption_parameters, suite_name
    from ..data import dataset_names, get_spec

    proto = _protocol(None)
    suites: dict[str, tuple[list[str], list[str]]] = {}
    for name in dataset_names():
        spec = get_spec(name)
        try:
            names = list(corruption_parameters(spec, 28, proto))
        except ValueError:  # no parameters for this dataset in the protocol
            continue
        corr, datasets = suites.setdefault(suite_name(spec), ([], []))
        corr.extend(c for c in names if c not in corr)
        datasets.append(name)
    for suite, (corr, datasets) in suites.items():
        print(f"{suite}: {len(corr)} corruptions x {len(proto['corruptions']['severities'])} severities")
        print(f"  corruptions: {', '.join(corr)}")
        print(f"  datasets:    {', '.join(datasets)}")
    print("\nParameters per severity: medbench corruptions list DATASET [--size N]")
    return 0


def _build(args: argparse.Namespace) -> int:
    import time

    from ..corruptions.generate import build_corrupted_sets
    from ..corruptions.params import corruption_parameters
    from ..data import get_spec, load_dataset

    spec = get_spec(args.dataset)
    proto = _protocol(args.only)
    split = load_dataset(spec.name, "test", args.size, args.data_root)
    params = corruption_parameters(spec, args.size, proto)
    t0 = time.perf_counter()
    sets = build_corrupted_sets(spec, args.size, split, params, seed=int(proto["seed"]))
    for name in sets.corruptions:
        if name in params:
            sets.load(name)  # verifies the sha256 of what was written or found
    print(f"{spec.name} ({args.size} px): {len(params)} corruptions x {len(proto['corruptions']['severities'])} "
          f"severities x {len(split)} images, verified in {time.perf_counter() - t0:.1f} s")
    print(f"cache: {sets.folder}")
    print(f"manifest sha256: {sets.manifest_sha256}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from ..corruptions.grid import corruption_grid

    out = args.out or f"{args.dataset}_{args.size}_corruptions.png"
    path = corruption_grid(args.dataset, size=args.size, index=args.index, out=out, data_root=args.data_root)
    print(f"wrote {path}")
    return 0
