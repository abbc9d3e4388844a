"""``medbench zoo list|show|download``: browse the model registry and fetch verified weights."""

from __future__ import annotations

import argparse
import sys

TABLE_COLUMNS = ["id", "dataset", "architecture", "method", "eps", "norm", "num_parameters", "extra_data", "sources"]


def register(sub) -> None:
    p = sub.add_parser("zoo", help="list, show and download zoo models",
                       description="The model zoo: one typed YAML entry per model (model_zoo/<dataset>/<ModelId>.yaml), "
                                   "weights pinned by sha256. Load one in Python with "
                                   "medbench.load_model(ID, dataset=D).")
    zsub = p.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)

    ls = zsub.add_parser("list", help="table of zoo models",
                         epilog="examples:\n  medbench zoo list --dataset breastmnist\n"
                                "  medbench zoo list --method pgd-at --format csv",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    ls.add_argument("--dataset", default=None, help="only this dataset")
    ls.add_argument("--method", default=None, help="only this training method (erm, pgd-at, trades, sam, auc-m)")
    ls.add_argument("--architecture", default=None, help="only this architecture")
    ls.add_argument("--format", choices=("table", "csv", "json"), default="table")
    ls.set_defaults(func=_list)

    show = zsub.add_parser("show", help="one entry in full (YAML)",
                           epilog="examples:\n  medbench zoo show Baseline_ResNet8_PGDAT --dataset breastmnist",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("model_id", metavar="ID")
    show.add_argument("--dataset", default=None, help="needed when ID exists for several datasets")
    show.set_defaults(func=_show)

    dl = zsub.add_parser("download", help="fetch and verify an entry's weights (warms the cache for offline use)",
                         epilog="examples:\n  medbench zoo download Baseline_ResNet8_PGDAT --dataset breastmnist",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    dl.add_argument("model_id", metavar="ID")
    dl.add_argument("--dataset", default=None, help="needed when ID exists for several datasets")
    dl.set_defaults(func=_download)


def _resolve_dataset(model_id: str, dataset: str | None, action: str) -> str:
    from ..zoo import UnknownModelError, get_entry, load_registry

    if dataset is not None:
        return get_entry(model_id, dataset).dataset
    found = sorted(e.dataset for e in load_registry().entries if e.id == model_id)
    if len(found) == 1:
        return found[0]
    if found:
        lines = "\n".join(f"  medbench zoo {action} {model_id} --dataset {d}" for d in found)
        raise UnknownModelError(f"{model_id} exists for several datasets ({', '.join(found)}); "
                                f"choose one with --dataset:\n{lines}")
    import difflib

    ids = sorted({e.id for e in load_registry().entries})
    close = difflib.get_close_matches(model_id, ids, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(f"No zoo model {model_id!r}.{hint} See `medbench zoo list`.")


def _list(args: argparse.Namespace) -> int:
    from ..zoo import list_models

    filters = {k: v for k, v in (("method", args.method), ("architecture", args.architecture)) if v is not None}
    frame = list_models(args.dataset, **filters).to_frame()
    if args.format == "csv":
        frame.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(frame.to_json(orient="records", indent=1, date_format="iso"))
    elif frame.empty:
        print("no models match" + (f" for {args.dataset}" if args.dataset else ""))
    else:
        print(frame[TABLE_COLUMNS].astype(object).fillna("-").to_string(index=False))
    return 0


def _show(args: argparse.Namespace) -> int:
    import yaml

    from ..zoo import entry_folder, get_entry

    entry = get_entry(args.model_id, _resolve_dataset(args.model_id, args.dataset, "show"))
    print(f"# {entry_folder(entry) / (entry.id + '.yaml')}")
    print(yaml.safe_dump(entry.model_dump(mode="json"), sort_keys=False, width=110), end="")
    return 0


def _download(args: argparse.Namespace) -> int:
    from ..zoo import download

    dataset = _resolve_dataset(args.model_id, args.dataset, "download")
    path = download(args.model_id, dataset)
    print(f"verified {args.model_id} ({dataset}): {path}")
    return 0
