#!/usr/bin/env python
"""Train, register and evaluate the medbench reference zoo (issue 6).

    python scripts/build_reference_zoo.py train [--dataset D ...] [--only ID ...] [--force]
    python scripts/build_reference_zoo.py evaluate [--dataset D ...] [--only ID ...] [--threats all] [--workers N]
    python scripts/build_reference_zoo.py reevaluate [--dataset D ...] [--only ID ...]  # to the current protocol
    python scripts/build_reference_zoo.py plan | summary

``train`` writes ``model_zoo/<dataset>/<ModelId>.{yaml,safetensors}`` and the training log
``leaderboard/results/<dataset>/<ModelId>.train.jsonl``; ``evaluate`` writes the full-protocol
``leaderboard/results/<dataset>/<ModelId>.json`` with the matrix runner (``medbench run``: cached cells,
resumable, ``--workers`` at once, ``--executor local|ray``), the dataset's ERM baseline first because it
is the corruption reference (BE / rBE) of the others. Each worker uses one thread (``--threads``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import sys
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "model_zoo"
RESULTS = REPO / "leaderboard" / "results"

from medbench.models.architectures import count_parameters  # noqa: E402
from medbench.data import get_spec  # noqa: E402
from medbench.train import TrainConfig, train  # noqa: E402
from medbench.train.entry import recipe_block  # noqa: E402

RECIPE_NAMES = {"erm": "ERM", "pgd-at": "PGDAT", "trades": "TRADES", "sam": "SAM", "auc-m": "AUCM"}

# Published numbers (MedMNIST v2 ResNet-18 at 28 px) live in leaderboard/literature.yaml: the site shows
# them as labelled "reported" rows beside the ERM baselines; they are not claims of these entries.
LITERATURE = REPO / "leaderboard" / "literature.yaml"

# Architectures per kind of data: small enough for 2 shared CPU cores.
ARCH_2D = ("ResNet8", "resnet8", {"width": 16})
ARCH_3D = ("SmallCNN3D", "smallcnn", {"width": 8, "dims": 3})
# More 2D families for the architectures study (--arch LABEL): timm models at 28 px, sizes reduced
# (widths, depth) before epochs so that the ResNet-8 recipes (same epochs, steps) fit 2 shared CPU cores.
ARCH_FAMILIES: dict[str, tuple[str, str, dict, str]] = {  # label -> (label, architecture, kwargs, family)
    "ResNet8": (*ARCH_2D, "ResNet"),
    "ResNet18W16": ("ResNet18W16", "timm/resnet18", {"channels": [16, 32, 64, 128]}, "ResNet"),
    "SmallViT": ("SmallViT", "timm/vit_tiny_patch16_224",
                 {"img_size": 28, "patch_size": 4, "embed_dim": 64, "depth": 4, "num_heads": 2}, "ViT"),
    "MobileNetV3S050": ("MobileNetV3S050", "timm/mobilenetv3_small_050", {}, "MobileNetV3"),
}
ARCH_TEXT = {
    "ResNet18W16": "timm's ResNet-18 (ImageNet stem: 7x7 stride-2 convolution and max-pool) with stage widths "
                   "16/32/64/128, a quarter of the standard 64/128/256/512",
    "SmallViT": "a small Vision Transformer (timm vit_tiny_patch16_224 with 28-px input, 4-px patches (49 tokens), "
                "embedding 64, depth 4, 2 heads)",
    "MobileNetV3S050": "timm's MobileNetV3-Small 0.5x (unchanged)",
}
_ARCH_OVERRIDE: list[tuple] = []  # set by --arch

# Epochs (and attack steps) per dataset, sized for 2 CPU cores shared by about 6 jobs (a few epochs
# run at 5-60 s each there): short schedules, stated in every entry.
PLAN: dict[str, dict[str, dict]] = {
    "breastmnist": {"erm": {"epochs": 30}, "pgd-at": {"epochs": 20, "steps": 3}, "trades": {"epochs": 20, "steps": 3},
                    "sam": {"epochs": 30}, "auc-m": {"epochs": 30}},
    "retinamnist": {"erm": {"epochs": 20}, "pgd-at": {"epochs": 10, "steps": 3}, "sam": {"epochs": 15},
                    "auc-m": {"epochs": 20}},
    "pneumoniamnist": {"erm": {"epochs": 8}, "pgd-at": {"epochs": 4, "steps": 2}, "sam": {"epochs": 6},
                       "auc-m": {"epochs": 8}},
    # 3D AUC-M: the ranking loss left every epoch predicting one class at argmax, so the decision
    # threshold is set on validation (folded into the output bias).
    "adrenalmnist3d": {"erm": {"epochs": 8}, "pgd-at": {"epochs": 4, "steps": 2}, "sam": {"epochs": 5},
                       "auc-m": {"epochs": 8, "threshold": "val_balanced_accuracy"}},
    "vesselmnist3d": {"erm": {"epochs": 8}, "pgd-at": {"epochs": 4, "steps": 2}, "sam": {"epochs": 5},
                      "auc-m": {"epochs": 8, "threshold": "val_balanced_accuracy"}},
}

PAPER_ARCH = {"2d": "the MedMNIST v2 baseline is ResNet-18 (11.2M parameters)",
              "3d": "the MedMNIST v2 3D baseline is a 3D ResNet-18 (33M parameters)"}

METHOD_TEXT = {
    "erm": "cross-entropy with inverse-frequency class weights, Adam, step decay (the MedMNIST v2 recipe; "
           "MedMNIST v2 uses unweighted CE), best epoch by validation AUC",
    "pgd-at": "PGD adversarial training (Madry et al.), Linf, trained at eps {eps} (protocol headline 2/255; "
              "a slightly larger training radius), {steps}-step PGD with random start, class-weighted CE, "
              "best epoch by the mean of clean and PGD-10 (2/255) validation balanced accuracy",
    "trades": "TRADES (Zhang et al.), beta {beta}, Linf eps {eps}, {steps}-step PGD on the KL term, class-weighted CE, "
              "best epoch by the mean of clean and PGD-10 (2/255) validation balanced accuracy",
    "sam": "Sharpness-Aware Minimization (Foret et al.), rho {rho}, around Adam, class-weighted CE, "
           "best epoch by validation balanced accuracy",
    "auc-m": "cross-entropy pre-training for {pretrain} epochs (Adam 1e-3), then the AUC-margin loss (Yuan et al., LibAUC), margin {margin}, one-vs-rest for multi-class, PESG optimizer "
             "(lr {lr}, epoch decay {epoch_decay}), class imbalance through the class priors, best epoch by validation AUC",
}
THRESHOLD_TEXT = {"argmax": "", "val_balanced_accuracy": "; decision threshold on the logit margin chosen for the "
                  "best validation balanced accuracy and folded into the output bias"}


def _arch(dataset: str) -> tuple:
    if get_spec(dataset).is_3d:
        return ARCH_3D
    return _ARCH_OVERRIDE[0][:3] if _ARCH_OVERRIDE else ARCH_2D


def model_id(dataset: str, method: str) -> str:
    return f"Baseline_{_arch(dataset)[0]}_{RECIPE_NAMES[method]}"


def config_for(dataset: str, method: str) -> TrainConfig:
    _, arch, kwargs = _arch(dataset)
    return TrainConfig(method=method, architecture=arch, architecture_kwargs=dict(kwargs), **PLAN[dataset][method])


def _eps_text(eps: float) -> str:
    return f"{eps * 255:g}/255"


def build_entry(dataset: str, method: str, cfg: TrainConfig, result) -> dict:
    spec = get_spec(dataset)
    mid = model_id(dataset, method)
    arch_label = _arch(dataset)[0]
    arch_label = ARCH_TEXT.get(arch_label, arch_label)
    text = METHOD_TEXT[method].format(eps=_eps_text(cfg.eps or 0), steps=cfg.steps, beta=cfg.beta, rho=cfg.rho,
                                      margin=cfg.margin, lr=cfg.lr, epoch_decay=cfg.epoch_decay,
                                      pretrain=cfg.pretrain_epochs) + THRESHOLD_TEXT[cfg.threshold]
    n_params = count_parameters(result.model)
    paper_note = f"; smaller than the paper's: {PAPER_ARCH['3d' if spec.is_3d else '2d']}" if n_params < 11e6 else ""
    same = (f"; the recipe of Baseline_{ARCH_2D[0]}_{RECIPE_NAMES[method]} (architectures study)"
            if arch_label != _arch(dataset)[0] else "")
    description = (f"Reference baseline: {arch_label} ({n_params:,} parameters{paper_note}{same}) trained from scratch on {dataset} (28 px) "
                   f"on CPU with {text}. {cfg.epochs} epochs, best epoch {result.best_epoch}; training took "
                   f"{result.wall_time_s / 60:.1f} min on 1 CPU thread. Retrain: "
                   f"`medbench train {mid} --dataset {dataset}`. Training log: "
                   f"leaderboard/results/{dataset}/{mid}.train.jsonl.")
    entry = {
        "id": mid, "dataset": dataset, "size": 28, "task": spec.task,
        "architecture": cfg.architecture, "architecture_kwargs": cfg.architecture_kwargs,
        "preprocessing": {"mean": [cfg.mean], "std": [cfg.std]},
        "recipe": recipe_block(cfg), "paper": None, "license": "Apache-2.0",
        "date_added": _dt.date.today().isoformat(), "description": description,
        "tags": ["reference", method, "adversarial" if method in ("pgd-at", "trades") else "standard",
                 "3d" if spec.is_3d else "2d"] + (["architectures-study", "timm"] if "/" in cfg.architecture else []),
        "weights": {"format": "safetensors", "sha256": result.weights_sha256,
                    "size_bytes": result.weights_path.stat().st_size, "num_parameters": n_params,
                    "sources": [{"kind": "bundled", "filename": f"{mid}.safetensors"}]},
        "reported": None,
    }
    from medbench.schema.entry import parse_entry

    parse_entry(entry, f"{mid} ({dataset})")  # validate before writing
    return entry


def do_train(datasets, only, force: bool) -> None:
    for dataset in datasets:
        for method in PLAN[dataset]:
            mid = model_id(dataset, method)
            if only and mid not in only:
                continue
            yaml_path = ZOO / dataset / f"{mid}.yaml"
            if yaml_path.exists() and not force:
                print(f"skip {dataset}/{mid}: {yaml_path.relative_to(REPO)} exists (--force retrains)", flush=True)
                continue
            cfg = config_for(dataset, method)
            result = train(cfg, dataset, ZOO / dataset, name=mid, progress=True)
            log_dest = RESULTS / dataset / f"{mid}.train.jsonl"
            log_dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(result.log_path), log_dest)
            entry = build_entry(dataset, method, cfg, result)
            yaml_path.write_text(yaml.safe_dump(entry, sort_keys=False, width=120))
            print(f"done {dataset}/{mid}: best epoch {result.best_epoch}, {result.best_val}, "
                  f"{result.wall_time_s:.0f}s, sha256 {result.weights_sha256[:12]}", flush=True)


def _refuse_uncommitted_code() -> None:
    """Results come from committed code only: stop when medbench's sources have uncommitted changes."""
    import subprocess

    out = subprocess.run(["git", "status", "--porcelain", "--", "medbench"], cwd=REPO, capture_output=True, text=True)
    if out.returncode == 0 and out.stdout.strip():
        raise SystemExit("medbench/ has uncommitted changes; commit them first (results name the code that computed "
                         "them):\n" + out.stdout)


def reference_result(dataset: str) -> Path:
    """The corruption reference (the model the protocol pins for ``dataset``): its full result, else a clean +
    corruptions run of the same model under the same protocol (identical numbers, kept in the medbench cache)."""
    import medbench
    from medbench.corruptions.evaluation import pinned_reference
    from medbench.paths import cache_root

    ref = pinned_reference(dataset, medbench.load_protocol())  # never chosen by id order
    if ref is None:
        raise SystemExit(f"the protocol pins no BE / rBE reference for {dataset} (corruptions.reference_models)")
    proto = medbench.load_protocol()
    final = RESULTS / dataset / f"{ref}.json"
    if final.exists() and medbench.EvaluationResult.from_json(final).provenance.protocol_version == proto.version:
        return final
    path = cache_root() / "reference_zoo" / dataset / f"v{proto.version}" / f"{ref}.clean_corruptions.json"
    if not path.exists():
        medbench.benchmark(ref, dataset, threats="clean,corruptions", out=path, model_id=ref, progress=True)
    return path


def do_evaluate(datasets, only, threats: str, *, executor: str = "local", workers: int = 1, store: str | None = None,
                threads: int = 1, allow_unranked: bool = False) -> None:
    """Full-protocol results of the trained entries that have none yet, computed as matrix cells
    (``medbench run``): every cell is stored once in the cell store (``--store``, default the medbench cache)
    and never recomputed, so an interrupted run resumes where it stopped; ``--workers`` cells run at once.
    Each dataset's pinned corruption reference (its ERM baseline) is computed first: the others read it."""
    from medbench.matrix import run_matrix
    from medbench.schema import EvaluationResult

    _refuse_uncommitted_code()
    todo = []
    for dataset in datasets:
        for method in PLAN[dataset]:
            mid = model_id(dataset, method)
            out = RESULTS / dataset / f"{mid}.json"
            if only and mid not in only:
                continue
            if not (ZOO / dataset / f"{mid}.yaml").exists():
                print(f"skip {dataset}/{mid}: not trained yet", flush=True)
            elif out.exists():
                print(f"skip {dataset}/{mid}: {out.relative_to(REPO)} exists", flush=True)
            else:
                todo.append((dataset, mid))
    if not todo:
        return
    from medbench.zoo.registry import clear_cache

    clear_cache()  # entries trained after this process started
    report = run_matrix(sorted({m for _, m in todo}), sorted({d for d, _ in todo}), threats, executor=executor,
                        workers=workers, store=store, out=RESULTS, threads_per_worker=threads, pairs=todo,
                        allow_unranked=allow_unranked)
    for (dataset, mid), path in report.results.items():
        print(f"evaluated {dataset}/{mid} -> {path.relative_to(REPO)}", flush=True)
        result = EvaluationResult.from_json(path)
        if not result.admitted:
            mark_not_admitted(ZOO / dataset / f"{mid}.yaml", result)
    for (dataset, mid), why in {**report.refused, **report.failed}.items():
        print(f"not written {dataset}/{mid}: {why}", flush=True)
    print(f"{report.cells} cells: {report.computed} computed, {report.stored} already stored, "
          f"{report.skipped} skipped; {report.wall_time_s:.0f}s", flush=True)


def mark_not_admitted(yaml_path: Path, result) -> None:
    """Tag an entry the harness did not admit ('not-admitted') and say why in its description: the recipe did
    not train this architecture to above chance, which is a result of its own (the architectures study)."""
    from medbench.schema.entry import parse_entry

    data = yaml.safe_load(yaml_path.read_text())
    if "not-admitted" in data["tags"]:
        return
    data["tags"].append("not-admitted")
    data["description"] += (" Not admitted by the harness (" + "; ".join(w.split(" - ")[0] for w in result.not_admitted_because) +
                            "): this recipe did not train this architecture above chance; kept as the record of "
                            "that outcome, never ranked.")
    parse_entry(data, str(yaml_path))
    yaml_path.write_text(yaml.safe_dump(data, sort_keys=False, width=120))
    print(f"tagged {yaml_path.relative_to(REPO)} not-admitted", flush=True)


def do_reevaluate(datasets, only) -> None:
    """Bring every committed result to the current protocol version: each result computed under an older
    version is re-run with the same threats, carrying over the attack sections that the new version left
    unchanged (``benchmark(..., reuse=old result)``: same config, subset, seed and torch; recorded in
    ``provenance.reused``) and recomputing everything else (clean, admission, corruptions, sanity)."""
    import medbench
    from medbench.corruptions.evaluation import pinned_reference
    from medbench.evaluate import protocol_threats
    from medbench.schema import EvaluationResult
    from medbench.schema.entry import read_entry

    current = medbench.load_protocol().version
    for dataset in datasets:
        for method in PLAN[dataset]:  # ERM first: the corruption reference of the others
            mid = model_id(dataset, method)
            out = RESULTS / dataset / f"{mid}.json"
            if (only and mid not in only) or not out.exists():
                continue
            old = EvaluationResult.from_json(out)
            if old.provenance.protocol_version == current:
                print(f"skip {dataset}/{mid}: already under protocol {current}", flush=True)
                continue
            entry = read_entry(ZOO / dataset / f"{mid}.yaml")
            defined = protocol_threats(get_spec(dataset), medbench.load_protocol())
            threats = [t for t in old.threats if t in defined]
            pinned = pinned_reference(dataset, medbench.load_protocol())  # re-evaluated first (PLAN: ERM first)
            ref = None if mid == pinned else reference_result(dataset)
            # reuse the earlier file by path, so provenance.reused records its sha256 (out overwrites it)
            earlier = out.with_name(out.name + f".v{old.provenance.protocol_version}")
            shutil.copyfile(out, earlier)
            try:
                result = medbench.benchmark(mid, dataset, threats=threats, out=out, reference=ref, model_id=mid,
                                            weights_sha256=entry.weights.sha256, reuse=earlier, progress=True)
            finally:
                earlier.unlink(missing_ok=True)
            print(f"re-evaluated {dataset}/{mid} under protocol {current}: reused "
                  f"{', '.join(result.provenance.reused) or 'nothing'}, wall {result.provenance.wall_time_s:.0f}s",
                  flush=True)


def do_summary(datasets) -> None:
    """One row per entry: clean / corruption / robust balanced accuracy and training time (from the files)."""
    import json

    from medbench.schema import EvaluationResult
    from medbench.schema.literature import read_literature

    published = read_literature(LITERATURE) if LITERATURE.is_file() else []
    print("| dataset | model | clean BA | clean AUC | clean ACC | corruption BA | Linf-2/255 BA | Linf-4/255 BA "
          "| L2-0.25 BA | train min | result |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for dataset in datasets:
        for method in PLAN[dataset]:
            mid = model_id(dataset, method)
            log = RESULTS / dataset / f"{mid}.train.jsonl"
            minutes = "-"
            if log.exists():
                end = json.loads(log.read_text().splitlines()[-1])
                minutes = f"{end['wall_time_s'] / 60:.1f}" if end.get("event") == "end" else "-"
            out = RESULTS / dataset / f"{mid}.json"
            if not out.exists():
                print(f"| {dataset} | {mid} | - | - | - | - | - | - | - | {minutes} | "
                      f"{'not trained' if minutes == '-' else 'missing'} |")
                continue
            r = EvaluationResult.from_json(out)
            adv = {k: v.robust_balanced_accuracy for k, v in r.adversarial.items()}
            c = r.clean
            print(f"| {dataset} | {mid} | {fmt(c.balanced_accuracy)} | {fmt(c.auc)} | {fmt(c.accuracy)} | "
                  f"{fmt(r.corruptions.balanced_accuracy if r.corruptions else None)} | {fmt(adv.get('Linf-2/255'))} | "
                  f"{fmt(adv.get('Linf-4/255'))} | {fmt(adv.get('L2-0.25'))} | {minutes} | {','.join(r.threats)} |")
            if method == "erm":
                for p in (p for p in published if p.dataset == dataset and p.size == 28 and p.recipe == "erm"):
                    print(f"| {dataset} | {p.model} (reported, {p.venue}) | - | {fmt(p.clean_auc)} | "
                          f"{fmt(p.clean_accuracy)} | - | - | - | - | - | reported, not verified |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("train", "evaluate", "reevaluate", "plan", "summary"))
    p.add_argument("--dataset", nargs="+", default=list(PLAN), choices=list(PLAN))
    p.add_argument("--only", nargs="+", default=None, help="model ids to include")
    p.add_argument("--force", action="store_true", help="retrain entries that already exist")
    p.add_argument("--threats", default="clean,Linf,L2,curves,corruptions",
                   help="threat order (default: all, attacks before corruptions; threats the protocol does "
                        "not define for a dataset, such as L2 on 3D data, are left out)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process / matrix worker")
    p.add_argument("--workers", type=int, default=1, help="evaluate: matrix cells computed at once")
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="evaluate: where cells run")
    p.add_argument("--store", default=None, help="evaluate: matrix cell store (default: the medbench cache)")
    p.add_argument("--arch", default=None, choices=list(ARCH_FAMILIES),
                   help="2D architecture family (architectures study); default ResNet8")
    p.add_argument("--allow-unranked", action="store_true",
                   help="evaluate models that fail admission (marked not admitted, never ranked)")
    p.add_argument("--methods", nargs="+", default=None, help="only these recipes (e.g. erm pgd-at)")
    args = p.parse_args(argv)
    if args.arch:
        _ARCH_OVERRIDE.append(ARCH_FAMILIES[args.arch])
    if args.methods:
        for d in PLAN:
            PLAN[d] = {m: v for m, v in PLAN[d].items() if m in args.methods}
    torch.set_num_threads(args.threads)
    os.environ.setdefault("MEDBENCH_DATA", str(REPO.parent / "shared" / "data" / "medmnist"))
    if args.command == "plan":
        for d in args.dataset:
            for m in PLAN[d]:
                print(d, model_id(d, m), config_for(d, m).to_dict())
    elif args.command == "summary":
        do_summary(args.dataset)
    elif args.command == "train":
        do_train(args.dataset, args.only, args.force)
    elif args.command == "reevaluate":
        do_reevaluate(args.dataset, args.only)
    else:
        do_evaluate(args.dataset, args.only, args.threats, executor=args.executor, workers=args.workers,
                    store=args.store, threads=args.threads, allow_unranked=args.allow_unranked)
    return 0


if __name__ == "__main__":
    sys.exit(main())
