"""``medbench data info|verify|download``: what datasets exist, what the data root holds, MD5 checks."""

from __future__ import annotations

import argparse

from .common import absolute_folder, add_data_args


def register(sub) -> None:
    p = sub.add_parser("data", help="list MedMNIST datasets, check and download files",
                       description="Inspect the MedMNIST data root: which datasets exist, which files are present, "
                                   "and whether their MD5 matches medmnist's official checksums.")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    info = dsub.add_parser("info", help="table of datasets (task, classes, channels, splits, licence, present sizes)",
                           epilog="examples:\n  medbench data info\n  medbench data info breastmnist",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    info.add_argument("name", nargs="?", help="one dataset (default: all 18)")
    add_data_args(info)
    info.set_defaults(func=_info)

    verify = dsub.add_parser("verify", help="check the MD5 of every file present (or of NAME's files)",
                             epilog="examples:\n  medbench data verify\n  medbench data verify breastmnist --size 28",
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.add_argument("name", nargs="?", help="one dataset (default: every file found)")
    verify.add_argument("--size", type=int, default=None, help="only this size (28, 64, 128, 224)")
    add_data_args(verify)
    verify.set_defaults(func=_verify)

    dl = dsub.add_parser(
        "download", help="download dataset files and verify their MD5",
        description="Download MedMNIST .npz files from Zenodo (medmnist's official URLs) or from the mirror in "
                    "$MEDBENCH_DATA_MIRROR / --mirror, verify each against medmnist's MD5, and move it into the "
                    "data root only when it matches. Files already present and valid are kept.",
        epilog="examples:\n  medbench data download breastmnist pneumoniamnist\n"
               "  medbench data download adrenalmnist3d --size 64 --data-root ~/data/medmnist\n"
               "  medbench data download breastmnist --mirror https://mirror.example.org/medmnist/",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    dl.add_argument("names", nargs="+", metavar="NAME", help="dataset names (see `medbench data info`)")
    dl.add_argument("--size", type=int, default=28, help="image size: 28 (default), 64, 128 or 224")
    dl.add_argument("--data-root", dest="data_root", metavar="DIR", default=None, type=absolute_folder,
                    help="target folder (default: $MEDBENCH_DATA, else ~/.medmnist)")
    dl.add_argument("--root", dest="data_root", type=absolute_folder, help=argparse.SUPPRESS)  # the old name, kept working
    dl.add_argument("--mirror", default=None, help="folder URL holding the files under medmnist's names")
    dl.add_argument("--force", action="store_true", help="download again even when a valid file is present")
    dl.add_argument("--quiet", action="store_true", help="no progress bar")
    dl.set_defaults(func=_download)


def _info(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..data import DATASETS, available_files, get_spec
    from ..paths import data_root

    present: dict[str, list[int]] = {}
    for name, size, _ in available_files(args.data_root):
        present.setdefault(name, []).append(size)
    specs = [get_spec(args.name)] if args.name else list(DATASETS.values())
    rows = [{
        "dataset": s.name, "dim": "3D" if s.is_3d else "2D", "task": s.task,
        "classes": s.num_classes, "channels": s.n_channels,
        "train/val/test": f"{s.n_samples['train']}/{s.n_samples['val']}/{s.n_samples['test']}",
        "licence": s.license, "present sizes": ",".join(map(str, present.get(s.name, []))) or "-",
    } for s in specs]
    print(f"data root: {data_root(args.data_root)}")
    print(pd.DataFrame(rows).to_string(index=False))
    if args.name:
        print("classes: " + "; ".join(f"{i}={c}" for i, c in enumerate(specs[0].class_names)))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..data import available_files, get_spec, verify_file
    from ..errors import MedbenchError
    from ..paths import data_root

    if args.name:
        spec = get_spec(args.name)
        targets = [(spec.name, s) for s in ([args.size] if args.size else spec.sizes)]
        found = {(n, s) for n, s, _ in available_files(args.data_root)}
        if not args.size:  # only the sizes that are present, unless a size was asked for
            targets = [t for t in targets if t in found] or [(spec.name, 28)]
    else:
        targets = [(n, s) for n, s, _ in available_files(args.data_root) if not args.size or s == args.size]
    if not targets:
        print(f"No MedMNIST files found in {data_root(args.data_root)}. "
              "Set MEDBENCH_DATA or --data-root, or run `medbench data download NAME`.")
        return 1
    bad = 0
    for name, size in targets:
        try:
            path = verify_file(name, size, args.data_root)
            print(f"OK      {name:<16} size {size:<4} {path}")
        except MedbenchError as exc:
            bad += 1
            print(f"FAILED  {name:<16} size {size:<4} {exc}")
    return 1 if bad else 0


def _download(args: argparse.Namespace) -> int:
    from ..download import download

    for name in args.names:
        path = download(name, args.size, args.data_root, mirror=args.mirror, force=args.force,
                        progress=not args.quiet)
        print(f"verified {path}")
    return 0
