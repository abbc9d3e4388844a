"""Study ``nonrobust-features``: do nonrobust features alone predict the label, and what do they cost?

Mouton et al. ("Useful nonrobust features are ubiquitous in biomedical images"), after Ilyas et al.
(2019): from the zoo's standard model (Baseline_ResNet8_ERM) build D_rand (every train and val image
moved by targeted PGD toward a random label and relabelled with it; :mod:`.nonrobust_set`), train a
fresh ResNet-8 on it with the same ERM recipe, and test it on the original clean test set and under
AutoAttack. Then compare the zoo's standard and adversarially trained models (Baseline_ResNet8_PGDAT)
under the protocol's MedMNIST-C corruptions, paired over the same test images, both as they are and
relative to each model's own clean balanced accuracy (the corruption effect apart from the clean gap).
Every model goes through the harness's admission rule on its clean test predictions; no conclusion
rests on a refused one. The result ends with the paper's claims: reproduced, not reproduced or not run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from .. import metrics as M
from ..data import Split, file_md5, get_spec, load_dataset
from ..errors import MedbenchError
from ..inference import default_batch_size, predict_logits, to_float
from ..schema.base import Interval, Strict
from .base import Admission, Claim, Finding, StatTest, Study, StudyOutcome, StudyResult, admit, format_p
from .nonrobust_set import (NonrobustSet, build_set, cache_key, load_arrays, load_set, save_arrays,
                             save_set)

STANDARD = "Baseline_ResNet8_ERM"
ALPHA = 0.05  # significance level of the summary's wording
ADVERSARIAL = "Baseline_ResNet8_PGDAT"
NONROBUST = "nonrobust-only (trained by this study)"
SETTING = "WRN-16-8"  # the paper's architecture
PAPER = {
    "clean": f"PathMNIST (9 classes, chance 11%), {SETTING}: 62% balanced accuracy on the clean test set for a model "
             "trained only on nonrobust features; well above chance on all five MedMNIST tasks studied",
    "robust": f"PathMNIST, {SETTING}: the nonrobust-only model collapses to about 4% under AutoAttack",
    "corruption": f"PathMNIST under MedMNIST-C, {SETTING}: 78% for the standard model, 89% for the adversarially "
                  "trained one",
    "clean_gap": "adversarially trained models sacrifice in-distribution accuracy (all five tasks)",
    "ood": "nonrobust features boost standard accuracy yet degrade out-of-distribution performance (the abstract's "
           "conclusion from the MedMNIST-C comparison)",
}


class Options(Strict):
    """Options of the nonrobust-features study (``--set NAME=VALUE``)."""

    eps_255: int = Field(8, ge=0, le=64, description="Linf radius of the targeted PGD that builds the relabelled "
                         "set, in grey levels (8 = 8/255); perturbed images are stored as uint8 like MedMNIST's")
    steps: int = Field(10, ge=1, le=1000, description="targeted PGD steps (no random start, as Ilyas et al.)")
    step_size_255: float | None = Field(None, gt=0, description="PGD step in grey levels (default 2.5 * eps / steps, "
                                        "Madry et al.)")
    min_flip_rate: float = Field(0.9, ge=0, le=1, description="refuse when PGD moves fewer than this fraction of the "
                                 "images that must change class to their target (the new labels would then follow "
                                 "the original ones and carry robust features)")
    epochs: int | None = Field(None, ge=1, description="override the ERM recipe's epochs (the zoo entry's), for "
                               "quick runs")
    selection: Literal["last", "recipe"] = Field("last", description="the epoch kept: the last one (as Ilyas et al.; "
                                                 "on the relabelled val set the recipe's validation AUC reaches 1 within "
                                                 "a few epochs, the perturbations being easy to detect, so selecting on "
                                                 "it keeps an early, undertrained epoch) or the recipe's best val epoch")
    max_train: int | None = Field(None, ge=4, description="perturb a stratified subset of this many train images "
                                  "(default: the whole train split)")
    max_val: int | None = Field(None, ge=4, description="the same for the val split")
    attack: Literal["apgd-ce", "autoattack"] = Field("apgd-ce", description="attack on the nonrobust-only model: "
                                                     "APGD-CE (AutoAttack's first attack, pyautoattack, the protocol's "
                                                     "iterations and seed), or the protocol's whole AutoAttack set "
                                                     "(adds FAB-T and Square: several times slower on CPU)")
    attack_eps_255: list[float] = Field(default_factory=lambda: [2.0, 8.0], min_length=1,
                                        description="Linf radii of that attack, in grey levels")
    attack_n: int | None = Field(None, ge=2, description="attack a stratified subset of this many images of the "
                                 "protocol's attack subset (default: the whole subset)")
    attack_iters: int | None = Field(None, ge=1, description="override the protocol's attack iterations (100), "
                                     "for quick runs")
    resamples: int = Field(10_000, ge=100, le=100_000, description="bootstrap resamples and label permutations "
                           "behind every CI and p-value")


class ClassCounts(Strict):
    cls: int
    name: str
    source: int = Field(description="images with this original label")
    targets: int = Field(description="images given this class as target")
    kept: int = Field(description="kept images relabelled with this class")
    kept_original: int = Field(description="kept images whose original label is this class")


class SetSummary(Strict):
    """One relabelled split (train or val)."""

    split: Literal["train", "val"]
    n: int = Field(description="source images perturbed")
    kept: int = Field(description="images the standard model classifies as their target after the attack")
    needed_flip: int = Field(description="images whose target differs from the standard model's clean prediction")
    flipped: int = Field(description="of those, the images moved to their target")
    agreement: int = Field(description="kept images whose new label equals the original label")
    max_delta_255: int = Field(description="largest change of a pixel, in grey levels")
    sha256: str
    per_class: list[ClassCounts]
    contingency: list[list[int]] = Field(description="kept images: rows original label, columns new label")


class TrainingSummary(Strict):
    method: str
    epochs: int
    best_epoch: int
    selection: str
    best_val: dict[str, float] = Field(description="validation metrics of the selected epoch (on the relabelled val set)")
    final_train_loss: float
    train_n: int
    val_n: int
    wall_time_s: float
    weights_sha256: str


class TestEvaluation(Strict):
    """The nonrobust-only model on the original clean test split."""

    n: int
    balanced_accuracy: float
    accuracy: float
    auc: float | None
    per_class_recall: list[float | None]
    confusion: list[list[int]] = Field(description="rows true label, columns prediction")
    permutation_p: float = Field(description="label-permutation test of balanced accuracy")
    permutation_null_mean: float
    auc_permutation_p: float = Field(description="label-permutation test of AUC (Mann-Whitney for binary tasks)")
    auc_permutation_null_mean: float
    majority_share: float | None = Field(None, description="fraction of the test images given the most frequent "
                                         "predicted class")
    probabilities: list[list[float]] = Field(description="the model's softmax output per test image")


class AttackSummary(Strict):
    eps_255: float
    eps: float
    attacks: list[str]
    n_iter: int
    n: int
    subset_indices_sha256: str
    clean_balanced_accuracy: float = Field(description="on the attacked images")
    robust_balanced_accuracy: float
    robust_accuracy: float
    robust_balanced_accuracy_ci: Interval
    confusion: list[list[int]] = Field(description="rows true label, columns prediction under attack")
    broken_by: dict[str, int]
    wall_time_s: float


class CorruptionPair(Strict):
    corruption: str
    severity: int
    standard: float = Field(description="balanced accuracy of the standard model")
    adversarial: float = Field(description="balanced accuracy of the adversarially trained model")


class CorruptionSummary(Strict):
    n: int = Field(description="test images (every cell corrupts the same images)")
    suite_parameters_sha256: str
    cache_manifest_sha256: str
    standard_clean_balanced_accuracy: float
    adversarial_clean_balanced_accuracy: float
    standard_majority_share: float | None = Field(None, description="fraction of the corrupted test images (every "
                                                  "cell) given the standard model's most frequent predicted class")
    adversarial_majority_share: float | None = None
    drop_difference: float | None = Field(None, description="(adversarial corruption BA - its clean BA) - (standard "
                                          "corruption BA - its clean BA): the corruption effect apart from the clean "
                                          "gap; > 0: the adversarially trained model loses less")
    drop_difference_ci: Interval | None = None
    drop_difference_p: float | None = Field(None, description="one-sided paired bootstrap p, H1: drop_difference > 0")
    cells: list[CorruptionPair]


class Details(Strict):
    standard_model: str
    adversarial_model: str
    architecture: str
    class_names: list[str]
    chance: float
    eps_255: int
    steps: int
    step_size_255: float
    protocol_version: str
    reused: list[str] = Field(description="stages taken from the study's cache (work dir) instead of recomputed; their "
                              "wall times are those of the run that computed them")
    train_set: SetSummary
    val_set: SetSummary
    training: TrainingSummary
    test: TestEvaluation
    attacks: list[AttackSummary]
    corruptions: CorruptionSummary


class NonrobustFeaturesResult(StudyResult):
    details: Details


# -- parts ------------------------------------------------------------------------------------------


def _entries(dataset: str):
    """The zoo entries of the standard and the adversarially trained model of ``dataset``."""
    from ..zoo import load_registry

    entries = {(e.id, e.dataset): e for e in load_registry().entries}
    missing = [m for m in (STANDARD, ADVERSARIAL) if (m, dataset) not in entries]
    if missing:
        both = sorted({d for (_, d) in entries if all((m, d) in entries for m in (STANDARD, ADVERSARIAL))})
        raise MedbenchError(f"Study nonrobust-features needs the zoo models {STANDARD} and {ADVERSARIAL} of {dataset}; "
                            f"the zoo lacks {', '.join(missing)}. Datasets that have both: {', '.join(both) or 'none'}.")
    return entries[(STANDARD, dataset)], entries[(ADVERSARIAL, dataset)]


def _summarise_set(s: NonrobustSet, split: str, names: list[str], sha: str, source: torch.Tensor) -> SetSummary:
    k = len(names)
    kept = s.kept
    table = np.zeros((k, k), dtype=int)
    np.add.at(table, (s.labels[kept], s.targets[kept]), 1)
    delta = (s.images.to(torch.int16) - source.to(torch.int16)).abs()
    per = [ClassCounts(cls=c, name=names[c], source=int((s.labels == c).sum()), targets=int((s.targets == c).sum()),
                       kept=int(table[:, c].sum()), kept_original=int(table[c].sum())) for c in range(k)]
    return SetSummary(split=split, n=len(s.labels), kept=int(kept.sum()), needed_flip=int(s.needed_flip.sum()),
                      flipped=int((kept & s.needed_flip).sum()), agreement=int(np.trace(table)),
                      max_delta_255=int(delta.max()) if delta.numel() else 0, sha256=sha, per_class=per,
                      contingency=table.tolist())


def _check_set(summary: SetSummary, opts: Options, dataset: str) -> None:
    rate = summary.flipped / summary.needed_flip if summary.needed_flip else 0.0
    if rate < opts.min_flip_rate:
        raise MedbenchError(
            f"Targeted PGD at eps {opts.eps_255}/255 ({opts.steps} steps) moved only {summary.flipped} of the "
            f"{summary.needed_flip} {summary.split} images of {dataset} that had to change class to their target "
            f"({rate:.1%}; the study needs at least min_flip_rate = {opts.min_flip_rate:.0%}). The kept images would "
            "mostly keep their original class, so the new labels would follow the robust features and the study "
            "would not measure nonrobust ones. Fix: raise eps_255 or steps (e.g. --set eps_255=8 --set steps=10).")
    thin = [c.name for c in summary.per_class if c.kept < 2]
    if thin:
        raise MedbenchError(f"The relabelled {summary.split} set of {dataset} keeps fewer than 2 images of class(es) "
                            f"{', '.join(thin)}; a model cannot be trained and selected on it. Fix: perturb more "
                            "images (max_train / max_val) or raise eps_255.")


def _relabelled(ctx, model, split: Split, opts: Options, std_sha: str, max_n: int | None, step: float,
                reused: list[str]
                ) -> tuple[NonrobustSet, str, Path]:
    ident = {"kind": "nonrobust-set", "dataset": split.spec.name, "size": split.size, "split": split.split,
             "data_md5": split.md5, "standard_sha256": std_sha, "eps_255": opts.eps_255, "steps": opts.steps,
             "step_size_255": step, "seed": ctx.seed, "max_n": max_n}
    path = Path(ctx.work_dir) / "sets" / f"{split.spec.name}_{split.size}_{split.split}_{cache_key(ident)}.npz"
    cached = load_set(path)
    if cached is not None:
        ctx.log(f"reusing the relabelled {split.split} set {path}")
        reused.append(f"relabelled {split.split} set")
        return cached[0], cached[1], path
    ctx.log(f"targeted PGD (eps {opts.eps_255}/255, {opts.steps} steps) on {max_n or len(split)} {split.split} images")
    s = build_set(model, split, eps=opts.eps_255 / 255, steps=opts.steps, step_size=step / 255, seed=ctx.seed,
                  max_n=max_n)
    return s, save_set(s, path), path


def _train_summary(log_path: Path, sha: str) -> TrainingSummary:
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    start = next(r for r in records if r["event"] == "start")
    end = next(r for r in records if r["event"] == "end")
    epochs = [r for r in records if r["event"] == "epoch"]
    best_val = {k: float(v) for k, v in end.items() if k.startswith("val_")}
    return TrainingSummary(method=start["config"]["method"], epochs=len(epochs), best_epoch=int(end["best_epoch"]),
                           selection=str(end["selection"]), best_val=best_val,
                           final_train_loss=float(epochs[-1]["train_loss"]), train_n=int(start["train_n"]),
                           val_n=int(start["val_n"]), wall_time_s=float(end["wall_time_s"]), weights_sha256=sha)


def _train(ctx, entry, train_split: Split, val_split: Split, opts: Options, set_shas: tuple[str, str],
           reused: list[str]):
    """The nonrobust-only model: the standard model's recipe (from its zoo entry) on the relabelled sets."""
    from ..train import TrainConfig, build_model, train
    from ..train.entry import config_from_entry
    from ..models.weights import load_state_strict, read_safetensors, sha256sum

    cfg = config_from_entry(entry).to_dict()
    cfg.update(seed=ctx.seed, **({"epochs": opts.epochs} if opts.epochs else {}),
               **({"selection": "last"} if opts.selection == "last" else {}))
    cfg = TrainConfig.from_dict(cfg)
    key = cache_key({"kind": "nonrobust-model", "sets": list(set_shas), "config": cfg.to_dict(),
                     "torch": torch.__version__})
    folder = Path(ctx.work_dir) / "models"
    weights, log, meta = folder / f"{key}.safetensors", folder / f"{key}.train.jsonl", folder / f"{key}.sha256"
    if weights.is_file() and log.is_file() and meta.is_file() and sha256sum(weights) == meta.read_text().strip():
        ctx.log(f"reusing the nonrobust-only model {weights}")
        reused.append("nonrobust-only model")
        model = build_model(cfg, ctx.dataset)
        load_state_strict(model, read_safetensors(weights), source=str(weights))
        sha = meta.read_text().strip()
    else:
        ctx.log(f"training the nonrobust-only model ({cfg.method}, {cfg.epochs} epochs, {len(train_split)} images)")
        res = train(cfg, ctx.dataset, folder, name=key, size=ctx.size, data_root=ctx.data_root, progress=ctx.progress,
                    train_split=train_split, val_split=val_split)
        model, sha = res.model, res.weights_sha256
        meta.write_text(sha + "\n")
    return model.eval(), _train_summary(log, sha)


def _predict(model, images: torch.Tensor, task: str, progress: bool, desc: str) -> tuple[np.ndarray, np.ndarray]:
    logits = predict_logits(model, images, batch_size=default_batch_size(tuple(images.shape[1:])), device="cpu",
                            progress=progress, desc=desc)
    probs = M.probabilities(logits, task)
    return probs, M.predictions(probs, task)


def _confusion(y: np.ndarray, pred: np.ndarray, k: int) -> list[list[int]]:
    table = np.zeros((k, k), dtype=int)
    np.add.at(table, (y, pred), 1)
    return table.tolist()


def _attack(ctx, model, model_sha256: str, test: Split, opts: Options, protocol, reused: list[str]
            ) -> list[AttackSummary]:
    import time

    from ..attacks import attack_chunk, attack_config, evaluation_subset, indices_sha256, make_autoattack
    from ..attacks.autoattack import broken_by_names

    spec, k = test.spec, test.spec.num_classes
    subset = evaluation_subset(spec.name, test.labels, protocol).indices
    if opts.attack_n is not None and opts.attack_n < len(subset):
        subset = subset[M.stratified_indices(test.labels[subset], opts.attack_n, seed=0)]
    y_all = test.labels[subset]
    out = []
    for eps_255 in opts.attack_eps_255:
        config = attack_config(spec, "Linf", eps_255 / 255, protocol, size=ctx.size, batch_size=250, seed=ctx.seed)
        if opts.attack == "apgd-ce":
            config = config.model_copy(update={"attacks": ["apgd-ce"], "n_target_classes": None, "n_queries": None})
        if opts.attack_iters is not None:
            config = config.model_copy(update={"n_iter": opts.attack_iters})
        key = cache_key({"kind": "attack", "model": model_sha256, "config": config.model_dump(),
                         "subset": indices_sha256(subset), "labels": test.md5})
        path = Path(ctx.work_dir) / "attacks" / f"{test.spec.name}_{ctx.size}_{key}.npz"
        saved = (load_arrays(path) or (None,))[0]
        if saved is None:
            ctx.log(f"{'+'.join(config.attacks)} at Linf {eps_255:g}/255 on {len(subset)} test images")
            adversary = make_autoattack(model, config, "cpu")
            t0 = time.perf_counter()
            parts = []
            for start in range(0, len(subset), config.batch_size):
                idx = torch.as_tensor(subset[start:start + config.batch_size])
                parts.append(attack_chunk(adversary, config, to_float(test.images[idx], "cpu"),
                                          torch.as_tensor(test.labels[idx])))
            saved = {"clean": np.concatenate([r.clean_pred for r in parts]),
                     "adv": np.concatenate([r.adv_pred for r in parts]),
                     "codes": np.concatenate([r.broken_by for r in parts]),
                     "wall": np.float64(round(time.perf_counter() - t0, 1))}
            save_arrays(path, saved)
        else:
            ctx.log(f"reusing the attack at Linf {eps_255:g}/255 ({path})")
            reused.append(f"attack at Linf {eps_255:g}/255")
        clean, adv, codes = saved["clean"], saved["adv"], saved["codes"]
        ci = M.bootstrap_metric_ci(y_all, adv, k, n_resamples=opts.resamples, seed=0)
        names = broken_by_names(config, codes)
        out.append(AttackSummary(
            eps_255=eps_255, eps=config.eps, attacks=list(config.attacks), n_iter=config.n_iter, n=len(subset),
            subset_indices_sha256=indices_sha256(subset),
            clean_balanced_accuracy=M.balanced_accuracy(y_all, clean, k),
            robust_balanced_accuracy=M.balanced_accuracy(y_all, adv, k),
            robust_accuracy=float(np.mean(adv == y_all)),
            robust_balanced_accuracy_ci=Interval(low=ci.low, high=ci.high),
            confusion=_confusion(y_all, adv, k),
            broken_by={str(n or "robust"): names.count(n) for n in dict.fromkeys(names)},
            wall_time_s=float(saved["wall"])))
    return out


def _corruptions(ctx, std, adv, shas: tuple[str, str], test: Split, protocol, opts: Options, reused: list[str]):
    from ..corruptions.evaluation import cell_logits, corrupted_sets
    from ..corruptions.params import parameters_sha256

    task, k, y = test.spec.task, test.spec.num_classes, test.labels
    params, sets = corrupted_sets(test.spec, ctx.size, test, protocol, progress=ctx.progress)
    key = cache_key({"kind": "corruption-predictions", "models": list(shas), "parameters": parameters_sha256(params),
                     "sets": sets.manifest_sha256})
    path = Path(ctx.work_dir) / "corruptions" / f"{test.spec.name}_{ctx.size}_{key}.npz"
    saved = (load_arrays(path) or (None,))[0]
    if saved is None:
        ctx.log(f"MedMNIST-C: {len(params)} corruptions x {len(protocol['corruptions']['severities'])} severities, "
                f"{len(y)} test images, two models")
        bs = default_batch_size(tuple(test.images.shape[1:]))
        names, sev, pred_std, pred_adv = [], [], [], []
        for name, severity, logits in cell_logits({"standard": std, "adversarial": adv}, params, sets,
                                                  batch_size=bs, device="cpu", progress=ctx.progress):
            names.append(name)
            sev.append(severity)
            pred_std.append(M.predictions(M.probabilities(logits["standard"], task), task))
            pred_adv.append(M.predictions(M.probabilities(logits["adversarial"], task), task))
        saved = {"corruption": np.array(names), "severity": np.array(sev), "standard": np.stack(pred_std),
                 "adversarial": np.stack(pred_adv)}
        save_arrays(path, saved)
    else:
        ctx.log(f"reusing the corruption predictions {path}")
        reused.append("corruption predictions")
    pred_std, pred_adv = saved["standard"], saved["adversarial"]
    cells = [CorruptionPair(corruption=str(n), severity=int(v), standard=M.balanced_accuracy(y, ps, k),
                            adversarial=M.balanced_accuracy(y, pa, k))
             for n, v, ps, pa in zip(saved["corruption"], saved["severity"], pred_std, pred_adv)]
    _, clean_std = _predict(std, test.images, task, False, "standard")
    _, clean_adv = _predict(adv, test.images, task, False, "adversarial")
    corr = M.paired_bootstrap_mean_ba(y, pred_adv, pred_std, k, n_resamples=opts.resamples, seed=0)
    clean = M.paired_bootstrap_mean_ba(y, clean_adv, clean_std, k, n_resamples=opts.resamples, seed=0)
    did = drop_difference(y, pred_adv, clean_adv, pred_std, clean_std, k, resamples=opts.resamples)
    summary = CorruptionSummary(n=len(y), suite_parameters_sha256=parameters_sha256(params),
                                cache_manifest_sha256=sets.manifest_sha256,
                                standard_clean_balanced_accuracy=M.balanced_accuracy(y, clean_std, k),
                                adversarial_clean_balanced_accuracy=M.balanced_accuracy(y, clean_adv, k),
                                standard_majority_share=majority_share(pred_std),
                                adversarial_majority_share=majority_share(pred_adv), cells=cells)
    std_mean, adv_mean = corruption_means(summary)
    summary.drop_difference = ((adv_mean - summary.adversarial_clean_balanced_accuracy)
                               - (std_mean - summary.standard_clean_balanced_accuracy))
    summary.drop_difference_ci = Interval(low=2 * did.diff.low, high=2 * did.diff.high)
    summary.drop_difference_p = did.p_a_not_greater
    return summary, corr, clean, {"standard": clean_std, "adversarial": clean_adv}


def drop_difference(y, corrupted_a, clean_a, corrupted_b, clean_b, k: int, *, resamples: int):
    """Paired bootstrap of (mean corrupted BA(a) - clean BA(a)) - (mean corrupted BA(b) - clean BA(b)).

    With C corruption cells, model a's conditions are its C corrupted predictions plus C copies of b's
    clean ones, and b's the reverse: the difference of their mean BAs is then half the difference of
    differences, on the same resamples as every other interval here. Returns ``M.PairedBootstrap``:
    double ``diff`` for the interval; ``p_a_not_greater`` is the one-sided p of H1: a loses less.
    """
    c = len(corrupted_a)
    a = np.vstack([corrupted_a, np.tile(clean_b, (c, 1))])
    b = np.vstack([corrupted_b, np.tile(clean_a, (c, 1))])
    return M.paired_bootstrap_mean_ba(y, a, b, k, n_resamples=resamples, seed=0)


def majority_share(predictions) -> float:
    """Fraction of the predictions (any shape) that are the most frequent class."""
    pred = np.asarray(predictions).reshape(-1)
    return float(np.bincount(pred).max() / max(1, len(pred)))


# -- findings ---------------------------------------------------------------------------------------


def _iv(i) -> Interval:
    return Interval(low=i.low, high=i.high)


def corruption_means(c: CorruptionSummary) -> tuple[float, float]:
    """(standard, adversarial) mean balanced accuracy over every corruption cell."""
    return float(np.mean([p.standard for p in c.cells])), float(np.mean([p.adversarial for p in c.cells]))


def confusion_balanced_accuracy(confusion: list[list[int]]) -> float:
    """Mean recall over the classes present, from a confusion matrix (rows true label)."""
    t = np.asarray(confusion, dtype=float)
    support = t.sum(1)
    return float(np.mean(np.diag(t)[support > 0] / support[support > 0]))


def confusion_majority_share(confusion: list[list[int]]) -> float:
    """Fraction of the images given the most frequent predicted class, from a confusion matrix."""
    cols = np.asarray(confusion).sum(0)
    return float(cols.max() / max(1, cols.sum()))


def _decision_note(confusion: list[list[int]]) -> str:
    predicted = int((np.asarray(confusion).sum(0) > 0).sum())
    if predicted > 1:
        return f"the model's own decision (argmax); it predicts {predicted} classes on the clean test split"
    return ("the model's own decision (argmax) puts every clean test image in one class: the boundary it learned on "
            "perturbed images (each pushed toward its label) misses unperturbed ones; the AUC below is threshold-free")


def refusal(a: Admission) -> str:
    """A refused model's failed checks, each in a short clause."""
    parts = []
    for v in a.verdicts:
        if v.passed:
            continue
        if v.name == "majority_false_positive_rate":
            parts.append(f"it gives class {a.majority_class} to {v.value:.0%} of the other classes' test images "
                         f"(limit {v.threshold:.0%})")
        elif v.name == "clean_above_chance":
            low = "undefined" if v.value is None else f"{v.value:.3f}"
            parts.append(f"the lower end of its clean BA's 95% CI ({low}) is not above chance + 0.05 "
                         f"({v.threshold:.3f})")
        else:
            parts.append(v.message)
    return "; ".join(parts)


@dataclass
class _Tests:
    """The paired bootstraps behind the comparisons and the nonrobust-only model's test-set CIs."""

    corr: object  # M.PairedBootstrap, corruption BA: adversarial (a) vs standard (b)
    clean: object  # the same for clean BA
    test_ci: dict  # M.bootstrap_ci of the nonrobust-only model on the clean test split
    admissions: dict[str, Admission]  # role ("nonrobust", "standard", "adversarial") -> admission


def _findings(d: Details, opts: Options, t: _Tests) -> list[Finding]:
    res = _nonrobust_findings(d, opts, t) + _corruption_findings(d, opts, t)
    from scipy.stats import chi2_contingency

    tr = d.train_set
    table = np.asarray(tr.contingency)
    rows, cols = table.sum(1) > 0, table.sum(0) > 0
    chi = chi2_contingency(table[rows][:, cols]) if rows.sum() > 1 and cols.sum() > 1 else None
    expected = float(np.sum(table.sum(1) * table.sum(0)) / max(1, table.sum()) ** 2)
    res += [
        Finding(key="train_kept_fraction", label="Train images kept",
                value=tr.kept / tr.n, note=f"{tr.kept} of {tr.n}; PGD moved {tr.flipped} of the {tr.needed_flip} "
                "images whose target differed from the clean prediction; kept: the standard model predicts the target"),
        Finding(key="label_agreement", label="Kept images whose new label is the original",
                value=tr.agreement / max(1, tr.kept), reference=expected,
                reference_label="expected if the new label ignores the original",
                test=None if chi is None else StatTest(
                    name="chi-square test of independence (kept train images, original x new label)",
                    null="the new label is independent of the original label, so robust features do not predict it",
                    statistic=float(chi.statistic), p_value=float(chi.pvalue)),
                note="a leak of the original label into the new one would let robust features predict it"),
        Finding(key="eps", label="Targeted PGD radius (Linf)",
                value=d.eps_255 / 255, unit="score", note=f"{d.eps_255}/255, {d.steps} steps of "
                f"{d.step_size_255:.3g}/255, perturbation rounded to grey levels"),
    ]
    return res


def _nonrobust_findings(d: Details, opts: Options, t: _Tests) -> list[Finding]:
    gate = t.admissions["nonrobust"]
    refused = "" if gate.admitted else f"refused by the admission rule ({refusal(gate)}): no conclusion rests on it; "
    res = [Finding(
        key="nonrobust_clean_ba", label="Nonrobust-only model: clean test BA",
        value=confusion_balanced_accuracy(d.test.confusion), ci=_iv(t.test_ci["balanced_accuracy"]),
        reference=d.chance, reference_label="chance (1/K)", majority_share=gate.majority_share,
        test=StatTest(name=f"one-sided label-permutation test of balanced accuracy ({opts.resamples:,} permutations)",
                      null="the model's test predictions are independent of the true labels (expected BA = chance; "
                           "permuting labels keeps both class and prediction frequencies, unlike a binomial test "
                           "on accuracy, whose chance level depends on the class balance)",
                      statistic=d.test.balanced_accuracy, p_value=d.test.permutation_p, resamples=opts.resamples),
        paper=PAPER["clean"], note=refused + _decision_note(d.test.confusion)),
        Finding(
        key="nonrobust_clean_auc", label="Nonrobust-only model: clean test AUC", value=d.test.auc,
        ci=_iv(t.test_ci["auc"]), reference=0.5, reference_label="chance",
        test=StatTest(name=f"one-sided label-permutation test of AUC ({opts.resamples:,} permutations; "
                      "the Mann-Whitney U test for two classes)",
                      null="the model's test scores are independent of the true labels (expected AUC 0.5)",
                      statistic=d.test.auc, p_value=d.test.auc_permutation_p, resamples=opts.resamples),
        note="threshold-free: do its scores rank the true classes of clean images? (the admission rule judges "
             "decisions, not scores)")]
    for a in d.attacks:
        res.append(Finding(
            key=f"nonrobust_robust_ba_linf_{a.eps_255:g}",
            label=f"Nonrobust-only model: BA under attack, Linf {a.eps_255:g}/255",
            value=confusion_balanced_accuracy(a.confusion), ci=a.robust_balanced_accuracy_ci,
            reference=a.clean_balanced_accuracy, reference_label="its clean BA on the same images",
            majority_share=confusion_majority_share(a.confusion), paper=PAPER["robust"],
            note=("" if gate.admitted else "refused model: this robust BA measures nothing; ")
            + f"{'+'.join(a.attacks)}, {a.n_iter} iterations, {a.n} test images"))
    return res


def _corruption_findings(d: Details, opts: Options, t: _Tests) -> list[Finding]:
    c = d.corruptions
    std_mean, adv_mean = corruption_means(c)
    boot = f"paired bootstrap over the {c.n} test images ({opts.resamples:,} resamples)"
    std_drop, adv_drop = std_mean - c.standard_clean_balanced_accuracy, adv_mean - c.adversarial_clean_balanced_accuracy
    gates = [t.admissions[r] for r in ("standard", "adversarial")]
    refused = "; ".join(f"{a.model} refused by the admission rule ({refusal(a)})" for a in gates if not a.admitted)
    warn = f"{refused}: no conclusion rests on this; " if refused else ""
    return [
        Finding(key="standard_corruption_ba", label="Standard model: MedMNIST-C BA", value=std_mean, ci=_iv(t.corr.b),
                paper=PAPER["corruption"], majority_share=c.standard_majority_share,
                note=f"{d.standard_model}; mean over {len(c.cells)} corruption x severity cells"),
        Finding(key="adversarial_corruption_ba", label="Adversarially trained model: MedMNIST-C BA", value=adv_mean,
                ci=_iv(t.corr.a), reference=std_mean, reference_label="the standard model",
                majority_share=c.adversarial_majority_share,
                note=f"{d.adversarial_model}; the same cells and images"),
        Finding(key="corruption_ba_difference", label="MedMNIST-C BA: adversarially trained minus standard",
                value=adv_mean - std_mean, ci=_iv(t.corr.diff), reference=0.0, reference_label="no difference",
                test=StatTest(name=f"one-sided {boot}", null="the adversarially trained model is not better under "
                              "corruptions (difference <= 0)", statistic=adv_mean - std_mean,
                              p_value=t.corr.p_a_not_greater, resamples=opts.resamples),
                paper=f"PathMNIST, {SETTING}: +11 points (78% -> 89%)",
                note=warn + "includes the clean gap below; the drop difference separates the corruption effect "
                f"(one-sided p of 'worse': {format_p(t.corr.p_a_not_less, opts.resamples)})"),
        Finding(key="clean_ba_difference", label="Clean test BA: adversarially trained minus standard",
                value=c.adversarial_clean_balanced_accuracy - c.standard_clean_balanced_accuracy,
                ci=_iv(t.clean.diff), reference=0.0, reference_label="no difference",
                test=StatTest(name=f"one-sided {boot}", null="the adversarially trained model is not worse on clean "
                              "images (difference >= 0)",
                              statistic=c.adversarial_clean_balanced_accuracy - c.standard_clean_balanced_accuracy,
                              p_value=t.clean.p_a_not_less, resamples=opts.resamples),
                paper=PAPER["clean_gap"], note=warn or None),
        Finding(key="standard_corruption_drop", label="Standard model: MedMNIST-C BA minus its clean BA",
                value=std_drop, note=d.standard_model),
        Finding(key="adversarial_corruption_drop",
                label="Adversarially trained model: MedMNIST-C BA minus its clean BA",
                value=adv_drop, reference=std_drop, reference_label="the standard model's drop",
                note=d.adversarial_model),
        Finding(key="corruption_drop_difference",
                label="Corruption effect apart from the clean gap: the adversarially trained model's drop minus the "
                      "standard model's", value=c.drop_difference, ci=c.drop_difference_ci, reference=0.0,
                reference_label="equal drops",
                test=StatTest(name=f"one-sided {boot}", null="the adversarially trained model loses at least as much "
                              "of its own clean BA under corruptions (difference <= 0)", statistic=c.drop_difference,
                              p_value=c.drop_difference_p, resamples=opts.resamples),
                paper=PAPER["ood"], note=warn + "difference of differences: each model's corruption BA relative to its "
                "own clean BA, paired over the same images and resamples"),
    ]


def _direction(p_greater: float, p_less: float, resamples: int, words: tuple[str, str, str]) -> tuple[str, str]:
    """(the wording, '; one-sided p = ... for <direction>') with the p of the direction stated."""
    def tested(w: str) -> str:
        return w.removeprefix("significantly ")

    if p_greater < ALPHA:
        return words[0], f"one-sided {format_p(p_greater, resamples)} for '{tested(words[0])}'"
    if p_less < ALPHA:
        return words[1], f"one-sided {format_p(p_less, resamples)} for '{tested(words[1])}'"
    return words[2], f"one-sided {format_p(p_greater, resamples)} for '{tested(words[0])}'"


def _summary(dataset: str, d: Details, opts: Options, t: _Tests) -> str:
    ba, test, n = confusion_balanced_accuracy(d.test.confusion), d.test, opts.resamples
    gate = t.admissions["nonrobust"]
    first = min(d.attacks, key=lambda a: a.eps_255)
    text = (f"Trained only on {dataset} images moved by targeted PGD ({d.eps_255}/255) toward random labels, a "
            f"ResNet-8 reaches {ba:.1%} balanced accuracy on the original clean test set, giving "
            f"{gate.majority_share:.1%} of the images one class ({gate.majority_class}). ")
    if gate.admitted:
        above, p = _direction(test.permutation_p, 1.0, n, ("significantly above chance", "",
                                                           "not significantly above chance"))
        text += (f"That is {above} ({d.chance:.0%}; {p}); under {'+'.join(first.attacks)} at Linf "
                 f"{first.eps_255:g}/255 its BA is {first.robust_balanced_accuracy:.1%}. ")
    else:
        text += (f"The admission rule refuses it ({refusal(gate)}), so neither its BA nor its BA under attack "
                 f"({first.robust_balanced_accuracy:.1%}) supports a conclusion. ")
    if test.auc is not None:
        text += (f"Its scores rank the true classes with AUC {test.auc:.1%} (one-sided permutation "
                 f"{format_p(test.auc_permutation_p, n)}; threshold-free, not a decision). ")
    return text + _corruption_summary(d, opts, t)


def _corruption_summary(d: Details, opts: Options, t: _Tests) -> str:
    c, n = d.corruptions, opts.resamples
    refused = [t.admissions[r].model for r in ("standard", "adversarial") if not t.admissions[r].admitted]
    if refused:
        return f"The corruption comparison has no conclusion: {' and '.join(refused)} refused by the admission rule."
    std_mean, adv_mean = corruption_means(c)
    raw, raw_p = _direction(t.corr.p_a_not_greater, t.corr.p_a_not_less, n,
                            ("significantly better", "significantly worse", "not significantly different"))
    gap = c.adversarial_clean_balanced_accuracy - c.standard_clean_balanced_accuracy
    std_drop = c.standard_clean_balanced_accuracy - std_mean
    adv_drop = c.adversarial_clean_balanced_accuracy - adv_mean
    rel, rel_p = _direction(c.drop_difference_p, 1.0, n, ("significantly less", "", "not significantly less"))
    return (f"Under MedMNIST-C the adversarially trained model is {raw} {'from' if raw.startswith('not') else 'than'} "
            f"the standard one ({adv_mean:.1%} vs {std_mean:.1%}; {raw_p}); its clean BA is "
            f"{abs(gap) * 100:.1f} points {'lower' if gap < 0 else 'higher'}. Relative to its own clean BA it loses "
            f"{adv_drop * 100:.1f} points under corruption, the standard model {std_drop * 100:.1f}: "
            f"{rel} ({c.drop_difference * 100:+.1f} points [{c.drop_difference_ci.low * 100:+.1f}, "
            f"{c.drop_difference_ci.high * 100:+.1f}]; {rel_p}).")


def _claims(dataset: str, d: Details, opts: Options, t: _Tests) -> list[Claim]:
    """The paper's claims, each reproduced / not reproduced / not run here, with the p of its direction."""
    n, gate = opts.resamples, t.admissions["nonrobust"]
    ba = confusion_balanced_accuracy(d.test.confusion)
    ci = t.test_ci["balanced_accuracy"]
    auc = "" if d.test.auc is None else (f"; its scores' AUC {d.test.auc:.1%} (one-sided permutation "
                                         f"{format_p(d.test.auc_permutation_p, n)}) is threshold-free, not a decision")
    here = (f"BA {ba:.1%} [{ci.low:.1%}, {ci.high:.1%}] vs chance {d.chance:.0%}; {gate.majority_share:.1%} of the "
            f"{d.test.n} test images predicted {gate.majority_class}")
    perm = "one-sided label-permutation test of BA (H1: above chance)"
    if not gate.admitted:
        clean = Claim(claim="A model trained only on nonrobust features predicts the label well above chance",
                      paper=PAPER["clean"], verdict="not reproduced", here=here, test=perm,
                      p_value=d.test.permutation_p, resamples=n,
                      reason=f"the nonrobust-only model is refused by the admission rule ({refusal(gate)}): its "
                             f"decisions do not show that nonrobust features predict the label on {dataset}{auc}")
    else:
        ok = d.test.permutation_p < ALPHA
        clean = Claim(claim="A model trained only on nonrobust features predicts the label well above chance",
                      paper=PAPER["clean"], verdict="reproduced" if ok else "not reproduced", here=here, test=perm,
                      p_value=d.test.permutation_p, resamples=n,
                      reason="admitted, and its BA is " + ("" if ok else "not ") + "significantly above chance")
    first = min(d.attacks, key=lambda a: a.eps_255)
    attack = f"{'+'.join(first.attacks)} at Linf {first.eps_255:g}/255 ({first.n_iter} iterations, {first.n} images)"
    if not gate.admitted:
        robust = Claim(claim="A model trained only on nonrobust features collapses under attack", paper=PAPER["robust"],
                       verdict="not run", here=f"BA {first.robust_balanced_accuracy:.1%} under {attack}",
                       reason="no admitted nonrobust-only model to attack: the attack ran, but a refused model's "
                              "robust BA measures nothing")
    else:
        hi = first.robust_balanced_accuracy_ci.high
        ok = hi is not None and hi < min(first.clean_balanced_accuracy, d.chance + 0.05)
        robust = Claim(claim="A model trained only on nonrobust features collapses under attack", paper=PAPER["robust"],
                       verdict="reproduced" if ok else "not reproduced",
                       here=f"BA {first.clean_balanced_accuracy:.1%} clean, {first.robust_balanced_accuracy:.1%} "
                            f"[{first.robust_balanced_accuracy_ci.low:.1%}, {hi:.1%}] under {attack}",
                       test="95% bootstrap CI of the robust BA",
                       reason="the robust BA's CI lies " + ("" if ok else "not ") + "below chance + 0.05")
    return [clean, robust] + _comparison_claims(d, opts, t) + [Claim(
        claim="The paper's own numbers: 62% clean BA for the nonrobust-only model, about 4% under AutoAttack, 78% vs "
              "89% under MedMNIST-C", paper=f"PathMNIST, {SETTING}; five MedMNIST tasks", verdict="not run",
        reason="PathMNIST is not in our data (breastmnist and pneumoniamnist here; the paper's five tasks are not all "
               f"run); {SETTING} is not trained here (the zoo's ResNet-8 pair, and a ResNet-8 on the relabelled "
               "set); the attack here is APGD-CE, AutoAttack's first attack")]


def _comparison_claims(d: Details, opts: Options, t: _Tests) -> list[Claim]:
    c, n = d.corruptions, opts.resamples
    refused = [t.admissions[r] for r in ("standard", "adversarial") if not t.admissions[r].admitted]
    texts = ("Adversarially trained models sacrifice in-distribution (clean) accuracy",
             "Adversarially trained models perform markedly better under MedMNIST-C corruptions",
             "Apart from the clean gap, the adversarially trained model loses less under corruption than the "
             "standard one")
    papers = (PAPER["clean_gap"], PAPER["corruption"], PAPER["ood"])
    if refused:
        why = "; ".join(f"{a.model} is refused by the admission rule ({refusal(a)})" for a in refused)
        return [Claim(claim=x, paper=p, verdict="not run", reason=why) for x, p in zip(texts, papers)]
    std_mean, adv_mean = corruption_means(c)
    gap = c.adversarial_clean_balanced_accuracy - c.standard_clean_balanced_accuracy
    boot = f"one-sided paired bootstrap over {c.n} test images"

    def verdict(p: float) -> str:
        return "reproduced" if p < ALPHA else "not reproduced"

    worse = ("; the opposite holds: significantly worse (one-sided "
             f"{format_p(t.corr.p_a_not_less, n)})") if t.corr.p_a_not_less < ALPHA else ""
    return [
        Claim(claim=texts[0], paper=papers[0], verdict=verdict(t.clean.p_a_not_less),
              here=f"clean BA {c.adversarial_clean_balanced_accuracy:.1%} ({d.adversarial_model}) vs "
                   f"{c.standard_clean_balanced_accuracy:.1%} ({d.standard_model}): {gap * 100:+.1f} points "
                   f"[{t.clean.diff.low * 100:+.1f}, {t.clean.diff.high * 100:+.1f}]",
              test=f"{boot} (H1: adversarially trained lower)", p_value=t.clean.p_a_not_less, resamples=n,
              reason="both models admitted; the clean BA is " + ("" if t.clean.p_a_not_less < ALPHA else "not ")
              + "significantly lower"),
        Claim(claim=texts[1], paper=papers[1], verdict=verdict(t.corr.p_a_not_greater),
              here=f"mean MedMNIST-C BA {adv_mean:.1%} vs {std_mean:.1%}: {(adv_mean - std_mean) * 100:+.1f} points "
                   f"[{t.corr.diff.low * 100:+.1f}, {t.corr.diff.high * 100:+.1f}] over {len(c.cells)} cells",
              test=f"{boot} (H1: adversarially trained higher)", p_value=t.corr.p_a_not_greater, resamples=n,
              reason="both models admitted; the corruption BA is " + ("" if t.corr.p_a_not_greater < ALPHA else "not ")
              + f"significantly higher{worse}; this comparison includes the clean gap"),
        Claim(claim=texts[2], paper=papers[2], verdict=verdict(c.drop_difference_p),
              here=f"corruption BA minus own clean BA: {d.adversarial_model} "
                   f"{(adv_mean - c.adversarial_clean_balanced_accuracy) * 100:+.1f}, {d.standard_model} "
                   f"{(std_mean - c.standard_clean_balanced_accuracy) * 100:+.1f} points; difference "
                   f"{c.drop_difference * 100:+.1f} [{c.drop_difference_ci.low * 100:+.1f}, "
                   f"{c.drop_difference_ci.high * 100:+.1f}]",
              test=f"{boot} of the difference of differences (H1: the adversarially trained model loses less)",
              p_value=c.drop_difference_p, resamples=n,
              reason="both models admitted; the corruption effect is separated from the clean gap, and the "
                     "adversarially trained model's loss is " + ("" if c.drop_difference_p < ALPHA else "not ")
                     + "significantly smaller"),
    ]


# -- the study --------------------------------------------------------------------------------------


def run(ctx) -> StudyOutcome:
    from ..protocol import load_protocol
    from ..zoo import load_model

    opts: Options = ctx.options
    spec = get_spec(ctx.dataset)
    if spec.is_multilabel:
        raise MedbenchError(f"{spec.name} is multi-label; the nonrobust-features study needs single-label classes.")
    std_entry, _ = _entries(spec.name)
    std = load_model(STANDARD, spec.name)
    protocol = load_protocol()
    step = opts.step_size_255 if opts.step_size_255 is not None else 2.5 * opts.eps_255 / opts.steps
    names = list(spec.class_names)

    splits = {s: load_dataset(spec.name, s, ctx.size, ctx.data_root) for s in ("train", "val", "test")}
    built, reused = {}, []
    for split, max_n in (("train", opts.max_train), ("val", opts.max_val)):
        s, sha, path = _relabelled(ctx, std, splits[split], opts, std_entry.weights.sha256, max_n, step, reused)
        summary = _summarise_set(s, split, names, sha, splits[split].images[torch.as_tensor(s.index)])
        _check_set(summary, opts, spec.name)
        built[split] = (s, summary, s.kept_split(splits[split], path, file_md5(path)))
    model, training = _train(ctx, std_entry, built["train"][2], built["val"][2], opts,
                             (built["train"][1].sha256, built["val"][1].sha256), reused)
    ctx.models[NONROBUST] = training.weights_sha256

    test = splits["test"]
    k, y = spec.num_classes, test.labels
    probs, pred = _predict(model, test.images, spec.task, ctx.progress, "nonrobust-only on test")
    m = M.compute_metrics(y, probs, spec.task)
    p_value, null_mean = M.permutation_test_balanced_accuracy(y, pred, k, n_permutations=opts.resamples, seed=0)
    auc_p, auc_null = M.permutation_test_auc(y, probs, spec.task, n_permutations=opts.resamples, seed=0)
    evaluation = TestEvaluation(n=len(y), balanced_accuracy=m.balanced_accuracy, accuracy=m.accuracy,
                                auc=None if np.isnan(m.auc) else m.auc,
                                per_class_recall=[None if np.isnan(r) else r for r in m.per_class_recall],
                                confusion=_confusion(y, pred, k), permutation_p=p_value,
                                permutation_null_mean=null_mean, auc_permutation_p=auc_p,
                                auc_permutation_null_mean=auc_null, probabilities=probs.tolist())
    attacks = _attack(ctx, model, training.weights_sha256, test, opts, protocol, reused)
    return _conclude(ctx, protocol, {"train_set": built["train"][1], "val_set": built["val"][1], "training": training,
                                     "test": evaluation, "attacks": attacks, "reused": reused, "step_size_255": step})


def rederive(old: NonrobustFeaturesResult, ctx) -> StudyOutcome:
    """``old``'s conclusions again: the nonrobust-only model's relabelled sets, training record, stored test
    probabilities and attack results are kept (nothing is trained or attacked); the zoo models' clean and
    corruption predictions, every admission, test, finding and claim are computed again."""
    from ..protocol import load_protocol

    d = old.details
    outcome = _conclude(ctx, load_protocol(), {"train_set": d.train_set, "val_set": d.val_set, "training": d.training,
                                               "test": d.test, "attacks": d.attacks, "reused": d.reused,
                                               "step_size_255": d.step_size_255})
    outcome.derived_how = (
        f"the nonrobust-only model (weights {d.training.weights_sha256[:12]}...) was not retrained: its relabelled "
        "sets, training record, test-set probabilities (from which its predictions, CIs and admission are computed "
        f"again) and attack results (protocol {d.protocol_version}) are the earlier result's; the zoo models' clean "
        "and MedMNIST-C predictions were computed again, and with them every admission, test, finding and claim")
    return outcome


def _conclude(ctx, protocol, parts: dict) -> StudyOutcome:
    """The zoo models' comparison, every admission, and the findings, summary and claims, from the
    nonrobust-only model's ``parts`` (train_set, val_set, training, test, attacks, reused, step_size_255)."""
    from ..zoo import load_model

    opts: Options = ctx.options
    spec = get_spec(ctx.dataset)
    std_entry, adv_entry = _entries(spec.name)
    std, adv = load_model(STANDARD, spec.name), load_model(ADVERSARIAL, spec.name)
    ctx.models[f"standard ({STANDARD})"] = std_entry.weights.sha256
    ctx.models[f"adversarially trained ({ADVERSARIAL})"] = adv_entry.weights.sha256
    test = load_dataset(spec.name, "test", ctx.size, ctx.data_root)
    y = test.labels
    probs = np.asarray(parts["test"].probabilities)
    pred = M.predictions(probs, spec.task)
    corruption, corr, clean, clean_pred = _corruptions(ctx, std, adv, (std_entry.weights.sha256,
                                                                       adv_entry.weights.sha256),
                                                       test, protocol, opts, parts["reused"])
    admissions = {"nonrobust": admit(NONROBUST, y, pred, spec, protocol),
                  "standard": admit(STANDARD, y, clean_pred["standard"], spec, protocol),
                  "adversarial": admit(ADVERSARIAL, y, clean_pred["adversarial"], spec, protocol)}
    evaluation = parts["test"].model_copy(update={"majority_share": admissions["nonrobust"].majority_share})
    details = Details(standard_model=STANDARD, adversarial_model=ADVERSARIAL, architecture=std_entry.architecture,
                      class_names=list(spec.class_names), chance=1 / spec.num_classes, eps_255=opts.eps_255,
                      steps=opts.steps, step_size_255=parts["step_size_255"], protocol_version=protocol.version,
                      reused=parts["reused"], train_set=parts["train_set"], val_set=parts["val_set"],
                      training=parts["training"], test=evaluation, attacks=parts["attacks"], corruptions=corruption)
    tests = _Tests(corr=corr, clean=clean, admissions=admissions,
                   test_ci=M.bootstrap_ci(y, probs, spec.task, n_resamples=opts.resamples, seed=0))
    return StudyOutcome(summary=_summary(spec.name, details, opts, tests), findings=_findings(details, opts, tests),
                        details=details, admissions=list(admissions.values()),
                        claims=_claims(spec.name, details, opts, tests))


STUDY = Study(
    name="nonrobust-features",
    title="Useful nonrobust features",
    question="Do features that a tiny adversarial perturbation changes predict the label on their own, and does a "
             "model that relies less on them hold up better under realistic corruptions?",
    paper="Mouton et al., \"Useful nonrobust features are ubiquitous in biomedical images\" (ISBI 2026), after "
          "Ilyas et al., \"Adversarial examples are not bugs, they are features\" (NeurIPS 2019)",
    paper_url="https://arxiv.org/abs/2604.22579",
    method=(f"Every train and val image of the dataset gets a target label drawn uniformly at random (seeded; Ilyas et "
            f"al.'s D_rand, so the image's robust features are independent of it) and is moved toward it by targeted "
            f"Linf PGD against the zoo's standard model `{STANDARD}` (default 8/255, 10 steps, no random start); the "
            "perturbation is rounded to grey levels, and only images that model then classifies as their target are "
            "kept, relabelled with it. A fresh ResNet-8 is trained on this set with the standard model's own ERM recipe "
            "(its last epoch kept) and tested on the original clean test split: balanced accuracy of its own decision "
            "and AUC of its scores (threshold-free), each with a bootstrap CI and a label-permutation test against "
            "chance; then under APGD-CE (AutoAttack's first "
            "attack; `--set attack=autoattack` runs the protocol's whole set) at Linf 2/255 and 8/255 on the protocol's "
            f"attack subset. Finally `{STANDARD}` and `{ADVERSARIAL}` are compared under the protocol's "
            "MedMNIST-C corruptions (mean balanced accuracy over every corruption and severity, the harness's corrupted "
            "test sets), with a paired bootstrap over test images for the difference."),
    result_type=NonrobustFeaturesResult,
    run=run,
    options=Options,
    version="2",
    rederive=rederive,
)
