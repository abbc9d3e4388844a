"""Explanation stability (after Thibeau-Sutre et al., SPIE Medical Imaging 2020): are a model's attribution
maps stable (a) across retrainings with other seeds of the same recipe, (b) under small Gaussian input
noise, (c) under an adversarial perturbation?

Maps come from captum (Saliency, IntegratedGradients, Occlusion), always for the true class's logit, on a
fixed seeded subset of the test split. A map is reduced to one value per pixel (absolute attribution summed
over channels); two maps are compared by the Spearman rank correlation of their pixels (in [-1, 1]) and by
the overlap of their top-k% pixels (in [0, 1]); both are 1 for identical maps. Scores are means over images
with percentile-bootstrap 95% intervals over images. Every model goes through the harness's admission
rule on its clean test predictions; a refused model's scores are reported, but no comparison or claim
rests on it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import warnings
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from .. import metrics
from ..errors import MedbenchError
from ..schema.base import Interval, Strict
from .base import Admission, Claim, Finding, StatTest, Study, StudyContext, StudyOutcome, StudyResult, admit, format_p

METHODS = ("saliency", "integrated_gradients", "occlusion")
METHOD_LABEL = {"saliency": "Saliency", "integrated_gradients": "Integrated Gradients", "occlusion": "Occlusion"}
HEADLINE = "saliency"  # the method whose scores are the findings and the board column
ALPHA = 0.05  # significance level of the claims' verdicts
PAPER_CLAIM = ("training is not stable: the regions found depend mainly on the initialisation and the training run "
               "(3D grey-matter maps, Alzheimer's disease)")
ADVERSARIAL_METHODS = ("pgd-at", "trades")
Method = Literal["saliency", "integrated_gradients", "occlusion"]


# ----------------------------------------------------------------------------- options and typed result

class Options(Strict):
    n_images: int = Field(32, ge=2, le=1000, description="test images in the fixed seeded subset")
    n_show: int = Field(4, ge=0, le=16, description="images whose maps are stored for the site")
    methods: list[Method] = Field(list(METHODS), min_length=1,
                                  description="attribution methods: saliency, integrated_gradients, occlusion")
    ig_steps: int = Field(32, ge=2, le=512, description="Integrated Gradients steps (Gauss-Legendre), baseline 0")
    occlusion_window: int = Field(4, ge=1, le=64, description="occlusion window side in pixels (baseline 0)")
    occlusion_stride: int = Field(2, ge=1, le=64, description="occlusion stride in pixels")
    top_k: float = Field(0.1, gt=0, lt=1, description="fraction of pixels in the top-k overlap score")
    noise_sigma: float = Field(0.02, ge=0, le=1, description="std of the Gaussian input noise (images in [0, 1])")
    noise_draws: int = Field(2, ge=1, le=64, description="noise draws per image (scores are averaged over them)")
    adv_eps: float = Field(2 / 255, ge=0, le=1, description="Linf radius of the APGD-CE perturbation")
    adv_iters: int = Field(50, ge=1, le=1000, description="APGD-CE iterations")
    retrain_methods: list[str] = Field(["erm"], description="recipes retrained with more seeds for score (a) "
                                       "(e.g. erm, pgd-at; each zoo model trained by one of them)")
    retrain_seeds: list[int] = Field([1, 2], description="extra seeds of each retrained recipe (the zoo model is "
                                     "its recipe's seed); [] skips score (a)")
    retrain_epochs: int | None = Field(None, ge=1, description="override the recipe's epochs (quick looks and "
                                       "tests only; None: the zoo entry's recipe as it is)")
    models: list[str] = Field([], description="zoo model ids to include ([]: every zoo model of the dataset)")
    sensitivity_samples: int = Field(8, ge=0, le=64, description="captum sensitivity_max samples per image, a "
                                     "cross-check of (b) for Saliency (0: skip)")
    bootstrap: int = Field(2000, ge=100, le=100000, description="bootstrap resamples for the intervals and tests")

    @field_validator("retrain_methods")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        from ..train.config import METHODS as RECIPES

        bad = [m for m in v if m not in RECIPES]
        if bad:
            raise ValueError(f"unknown recipe(s) {', '.join(bad)}; choose from {', '.join(RECIPES)}")
        return v

    @field_validator("retrain_seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v) or any(sd < 0 for sd in v):
            raise ValueError("seeds must be distinct non-negative integers")
        return v


class Score(Strict):
    """A stability score: mean over images of Spearman and top-k overlap, with 95% bootstrap intervals."""

    spearman: float
    spearman_ci: Interval
    topk: float
    topk_ci: Interval
    n_images: int
    per_image_spearman: list[float]
    per_image_topk: list[float]


class MethodScores(Strict):
    method: Method
    seeds: Score | None = Field(None, description="(a) mean pairwise similarity across the retrained seeds")
    noise: Score = Field(description="(b) similarity of map(x) and map(x + noise), averaged over draws")
    adversarial: Score = Field(description="(c) similarity of map(x) and map(x_adv)")
    sensitivity_max: float | None = Field(None, description="captum.metrics.sensitivity_max, mean over images: "
                                          "the largest ||map(x + d) - map(x)|| / ||map(x)|| (Frobenius) over "
                                          "uniform noise d of radius noise_sigma; 0 = stable")
    maps: list[str] = Field(default_factory=list, description="PNG (base64) of the clean |map| of the shown images")
    adv_maps: list[str] = Field(default_factory=list, description="PNG (base64) of the |map| of their x_adv")


class ModelScores(Strict):
    model_id: str
    recipe: str
    architecture: str
    weights_sha256: str
    subset_accuracy: float = Field(description="fraction of the subset classified correctly (clean)")
    adv_accuracy: float = Field(description="fraction of the subset classified correctly after APGD-CE")
    retrained: dict[str, str] = Field(default_factory=dict, description="seed -> weights sha256 of the retrainings")
    retrain_epochs: int | None = None
    retrain_note: str | None = Field(None, description="why score (a) is missing, when it is")
    admitted: bool | None = Field(None, description="passed the harness's admission rule on its clean test "
                                  "predictions (else no comparison or claim rests on it)")
    clean_balanced_accuracy: float | None = Field(None, description="on the whole clean test split")
    majority_share: float | None = Field(None, description="fraction of the test images given its most frequent "
                                         "predicted class")
    methods: list[MethodScores]

    def method(self, name: str) -> MethodScores | None:
        return next((m for m in self.methods if m.method == name), None)


class Comparison(Strict):
    """Paired comparison of an adversarially trained model with the ERM model of the same architecture."""

    method: Method
    score: Literal["noise", "adversarial"]
    model: str
    recipe: str
    baseline: str
    baseline_recipe: str
    difference: float
    ci: Interval
    p_value: float
    resamples: int | None = Field(None, description="bootstrap resamples behind p_value (its floor: "
                                  "1 / (resamples + 1))")
    wilcoxon_p: float | None = Field(None, description="two-sided Wilcoxon signed-rank p (scipy), a cross-check")

    @property
    def p_text(self) -> str:
        return format_p(self.p_value, self.resamples)


class Details(Strict):
    indices: list[int] = Field(description="test-split indices of the subset")
    shown: list[int] = Field(description="test-split indices of the images whose maps are stored")
    shown_labels: list[str]
    images: list[str] = Field(description="PNG (base64) of the shown images")
    target: Literal["label"] = "label"
    models: list[ModelScores]
    comparisons: list[Comparison] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="comparisons not made, and why")

    def model(self, model_id: str) -> ModelScores | None:
        return next((m for m in self.models if m.model_id == model_id), None)


class Result(StudyResult):
    details: Details


# ----------------------------------------------------------------------------- similarity

def _ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank), as scipy.stats.rankdata."""
    from scipy.stats import rankdata

    return rankdata(a, axis=-1)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each row of ``a`` with the same row of ``b`` (N x P -> N).

    Rows that are both constant are identical in rank (1.0); a constant row against a varying one has
    no rank information (0.0), where scipy.stats.spearmanr returns nan.
    """
    a, b = np.atleast_2d(a).astype(np.float64), np.atleast_2d(b).astype(np.float64)
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(1) / den
    flat_a, flat_b = np.ptp(a, axis=1) == 0, np.ptp(b, axis=1) == 0
    rho[flat_a & flat_b] = 1.0
    rho[flat_a ^ flat_b] = 0.0
    return np.clip(rho, -1.0, 1.0)


def topk_overlap(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Fraction of the top ``k`` (fraction of pixels) of each row of ``a`` that are also in ``b``'s top."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    n = max(1, int(round(k * a.shape[1])))
    ta = np.argsort(-a, axis=1, kind="stable")[:, :n]
    tb = np.argsort(-b, axis=1, kind="stable")[:, :n]
    return np.array([len(np.intersect1d(x, y, assume_unique=True)) / n for x, y in zip(ta, tb)])


def bootstrap_mean(values: np.ndarray, n_resamples: int, seed: int) -> tuple[float, Interval, np.ndarray]:
    """Mean, its 95% percentile-bootstrap interval over the entries, and the resampled means."""
    values = np.asarray(values, dtype=np.float64)
    means = metrics.bootstrap(lambda idx: values[idx].mean(1), len(values), n_resamples=n_resamples, seed=seed,
                              chunk=n_resamples, draws="indices")
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), Interval(low=round(float(lo), 6), high=round(float(hi), 6)), means


def score(pairs: list[tuple[np.ndarray, np.ndarray]], k: float, n_resamples: int, seed: int) -> Score:
    """The score of maps compared in ``pairs`` (each N x P); per image, the mean over the pairs."""
    rho = np.mean([spearman(a, b) for a, b in pairs], axis=0)
    top = np.mean([topk_overlap(a, b, k) for a, b in pairs], axis=0)
    m_rho, ci_rho, _ = bootstrap_mean(rho, n_resamples, seed)
    m_top, ci_top, _ = bootstrap_mean(top, n_resamples, seed)
    return Score(spearman=round(m_rho, 6), spearman_ci=ci_rho, topk=round(m_top, 6), topk_ci=ci_top,
                 n_images=len(rho), per_image_spearman=[round(float(v), 5) for v in rho],
                 per_image_topk=[round(float(v), 5) for v in top])


# ----------------------------------------------------------------------------- attributions

def attribute(model: nn.Module, x: torch.Tensor, target: torch.Tensor, method: str, opts: Options) -> torch.Tensor:
    """captum's attribution of ``target``'s logit for inputs ``x`` (N x C x H x W), as returned by captum."""
    with warnings.catch_warnings():  # captum warns that it set requires_grad on the inputs itself
        warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients")
        return _attribute(model, x, target, method, opts)


def _attribute(model: nn.Module, x: torch.Tensor, target: torch.Tensor, method: str, opts: Options) -> torch.Tensor:
    from captum.attr import IntegratedGradients, Occlusion, Saliency

    if method == "saliency":
        return Saliency(model).attribute(x, target=target, abs=True)
    if method == "integrated_gradients":
        return IntegratedGradients(model).attribute(x, baselines=0.0, target=target, n_steps=opts.ig_steps,
                                                    internal_batch_size=max(64, len(x)))
    if method == "occlusion":
        c, w, s = x.shape[1], opts.occlusion_window, opts.occlusion_stride
        return Occlusion(model).attribute(x, sliding_window_shapes=(c, w, w), strides=(c, s, s), baselines=0.0,
                                          target=target, perturbations_per_eval=64)
    raise ValueError(f"unknown attribution method {method!r}")


def pixel_map(attr: torch.Tensor) -> np.ndarray:
    """One value per pixel: |attribution| summed over channels, flattened (N x H*W)."""
    return attr.detach().abs().sum(1).flatten(1).double().numpy()


def maps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, methods, opts: Options) -> dict[str, np.ndarray]:
    model.eval()
    return {m: pixel_map(attribute(model, x, y, m, opts)) for m in methods}


def png_b64(img: np.ndarray) -> str:
    """A deterministic PNG (base64) of a uint8 H x W (grey) or H x W x 3 (RGB) image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG", optimize=False, compress_level=9)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def heat_png(m: np.ndarray, side: int, levels: int = 16) -> str:
    """|map| scaled to its own maximum in ``levels`` steps of matplotlib's 'magma' colormap (dark: low), as a
    palette PNG (a few hundred bytes for 28 px)."""
    from matplotlib import colormaps
    from PIL import Image

    m = m.reshape(side, side)
    top = float(m.max())
    level = np.zeros(m.shape, np.uint8) if top <= 0 else np.round(m / top * (levels - 1)).astype(np.uint8)
    palette = (colormaps["magma"](np.linspace(0, 1, levels))[:, :3] * 255).round().astype(np.uint8)
    img = Image.fromarray(level, mode="P")
    img.putpalette(palette.flatten().tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=9)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def image_png(x: torch.Tensor) -> str:
    arr = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return png_b64(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))


# ----------------------------------------------------------------------------- perturbations

def noisy(x: torch.Tensor, sigma: float, draw: int, seed: int, ids: np.ndarray) -> torch.Tensor:
    """clip(x + sigma * N(0, 1)), one seeded stream per (seed, draw, test index) as the noise curves."""
    from ..attacks.curves import gaussian_noise

    return gaussian_noise(x, sigma, seed=seed, sigma_index=draw, example_ids=ids)


def apgd_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, n_iter: int, seed: int) -> torch.Tensor:
    """pyautoattack's APGD-CE (Linf, 1 restart), the highest-loss point for every image (``best_loss``):
    every image is perturbed, including those the model already misclassifies."""
    from pyautoattack.autopgd_base import APGDAttack

    if eps == 0:
        return x.clone()
    attack = APGDAttack(model, n_iter=n_iter, norm="Linf", n_restarts=1, eps=eps, seed=seed, loss="ce",
                        eot_iter=1, rho=0.75, device=x.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return attack.perturb(x, y, best_loss=True).detach()


# ----------------------------------------------------------------------------- retraining

def retrain(entry, seed: int, ctx: StudyContext, epochs: int | None) -> tuple[nn.Module, str]:
    """``entry``'s recipe retrained with ``seed`` by medbench.train, cached in ``ctx.work_dir`` by config."""
    from ..train import train
    from ..train.entry import config_from_entry
    from ..models.weights import load_state_strict, read_safetensors, sha256sum
    from ..zoo.loader import build_model

    cfg = config_from_entry(entry)
    cfg.seed = seed
    if epochs is not None:
        cfg.epochs = epochs
    key = hashlib.sha256(json.dumps({"config": cfg.to_dict(), "dataset": ctx.dataset, "size": ctx.size},
                                    sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(ctx.work_dir) / f"{ctx.dataset}_{ctx.size}px"
    name = f"{entry.id}.seed{seed}.{key}"
    path = folder / f"{name}.safetensors"
    if path.is_file():
        ctx.log(f"  {entry.id} seed {seed}: cached {path}")
        model = build_model(entry)
        load_state_strict(model, read_safetensors(path), source=str(path))
        return model.eval(), sha256sum(path)
    ctx.log(f"  {entry.id} seed {seed}: training ({cfg.method}, {cfg.epochs} epochs) into {folder}")
    res = train(cfg, ctx.dataset, folder, name=name, size=ctx.size, data_root=ctx.data_root, progress=ctx.progress)
    return res.model.eval(), res.weights_sha256


def retrain_block(entry, opts: Options) -> str | None:
    """Why ``entry`` is not retrained for score (a), or None when it is."""
    from ..train.entry import config_from_entry

    if not opts.retrain_seeds:
        return "no retrain seeds were requested"
    if entry.recipe.method not in opts.retrain_methods:
        return (f"recipe {entry.recipe.method} was not retrained (retrain_methods: "
                f"{', '.join(opts.retrain_methods) or 'none'})")
    try:
        config_from_entry(entry)
    except ValueError as exc:
        return f"the entry's recipe cannot be rerun by medbench train ({exc})"
    return None


# ----------------------------------------------------------------------------- the study

@dataclass
class _Subset:
    x: torch.Tensor
    y: torch.Tensor
    ids: np.ndarray


def _subset(ctx: StudyContext, n: int) -> _Subset:
    from ..data import load_dataset

    split = load_dataset(ctx.dataset, "test", size=ctx.size, root=ctx.data_root)
    rng = np.random.default_rng([ctx.seed, 15])
    ids = np.sort(rng.choice(len(split), size=min(n, len(split)), replace=False))
    x = split.images[torch.as_tensor(ids)].float().div(255.0)
    y = torch.as_tensor(split.labels.reshape(len(split), -1)[ids, 0], dtype=torch.long)
    return _Subset(x, y, ids)


def _sensitivity(model: nn.Module, s: _Subset, method: str, opts: Options) -> float | None:
    """captum.metrics.sensitivity_max of the (channel-summed, absolute) map, mean over images."""
    if opts.sensitivity_samples == 0 or opts.noise_sigma == 0 or method != "saliency":
        return None  # Saliency only: for Integrated Gradients and Occlusion it costs more than the study
    from captum.metrics import sensitivity_max

    def explain(inputs, target):
        x = inputs[0] if isinstance(inputs, tuple) else inputs  # captum passes a tuple of inputs
        return (attribute(model, x, target, method, opts).abs().sum(1, keepdim=True),)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        sens = sensitivity_max(explain, s.x, perturb_radius=opts.noise_sigma,
                               n_perturb_samples=opts.sensitivity_samples, target=s.y)
    return round(float(sens.mean()), 6)


def _model_scores(entry, model: nn.Module, sha: str, s: _Subset, ctx: StudyContext, shown: np.ndarray,
                  seed_models: list[tuple[int, nn.Module, str]], note: str | None) -> ModelScores:
    opts: Options = ctx.options
    b, k = opts.bootstrap, opts.top_k
    side = s.x.shape[-1]
    clean = maps(model, s.x, s.y, opts.methods, opts)
    noise_maps = [maps(model, noisy(s.x, opts.noise_sigma, d, ctx.seed, s.ids), s.y, opts.methods, opts)
                  for d in range(opts.noise_draws)]
    x_adv = apgd_ce(model, s.x, s.y, opts.adv_eps, opts.adv_iters, ctx.seed)
    adv = maps(model, x_adv, s.y, opts.methods, opts)
    others = [maps(m, s.x, s.y, opts.methods, opts) for _, m, _ in seed_models]
    with torch.no_grad():
        acc = float((model(s.x).argmax(1) == s.y).float().mean())
        adv_acc = float((model(x_adv).argmax(1) == s.y).float().mean())
    out = []
    for method in opts.methods:
        group = [clean[method]] + [o[method] for o in others]
        out.append(MethodScores(
            method=method,
            seeds=score(list(combinations(group, 2)), k, b, ctx.seed) if others else None,
            noise=score([(clean[method], n[method]) for n in noise_maps], k, b, ctx.seed),
            adversarial=score([(clean[method], adv[method])], k, b, ctx.seed),
            sensitivity_max=_sensitivity(model, s, method, opts),
            maps=[heat_png(clean[method][i], side) for i in shown],
            adv_maps=[heat_png(adv[method][i], side) for i in shown]))
    return ModelScores(model_id=entry.id, recipe=entry.recipe.method, architecture=entry.architecture,
                       weights_sha256=sha, subset_accuracy=round(acc, 6), adv_accuracy=round(adv_acc, 6),
                       retrained={str(sd): h for sd, _, h in seed_models},
                       retrain_epochs=(opts.retrain_epochs or entry.recipe.epochs) if seed_models else None,
                       retrain_note=note, methods=out)


def _comparisons(models: list[ModelScores], entries: dict, opts: Options, seed: int
                 ) -> tuple[list[Comparison], list[str]]:
    """Each adversarially trained model against the ERM model of the same architecture, paired over images,
    when both are admitted; and a note for each pair left out."""
    from scipy.stats import wilcoxon

    out, notes = [], []
    for m in models:
        if m.recipe not in ADVERSARIAL_METHODS:
            continue
        base = next((o for o in models if o.recipe == "erm" and o.architecture == m.architecture
                     and entries[o.model_id].architecture_kwargs == entries[m.model_id].architecture_kwargs), None)
        if base is None:
            continue
        refused = [x.model_id for x in (m, base) if x.admitted is False]
        if refused:
            notes.append(f"{m.model_id} vs {base.model_id} not compared: {' and '.join(refused)} refused by the "
                         "admission rule")
            continue
        for method in opts.methods:
            for which in ("adversarial", "noise"):
                a = np.asarray(getattr(m.method(method), which).per_image_spearman)
                r = np.asarray(getattr(base.method(method), which).per_image_spearman)
                diff, ci, means = bootstrap_mean(a - r, opts.bootstrap, seed)
                p = (1 + int((means <= 0).sum())) / (len(means) + 1)  # one-sided: H1 mean difference > 0
                try:
                    w = float(wilcoxon(a, r).pvalue) if np.any(a != r) else None
                except ValueError:
                    w = None
                out.append(Comparison(method=method, score=which, model=m.model_id, recipe=m.recipe,
                                      baseline=base.model_id, baseline_recipe=base.recipe,
                                      difference=round(diff, 6), ci=ci, p_value=float(f"{p:.6g}"),
                                      resamples=opts.bootstrap,
                                      wilcoxon_p=None if w is None else float(f"{w:.6g}")))
    return out, notes


def run(ctx: StudyContext) -> StudyOutcome:
    from ..data import get_spec
    from ..zoo import list_models, load_entry_model
    from ..zoo.registry import entry_folder

    opts: Options = ctx.options
    spec = get_spec(ctx.dataset)
    if importlib.util.find_spec("captum") is None:
        raise MedbenchError("explanation-stability computes its maps with captum, which is not installed: "
                            "pip install 'medbench[studies]' (or pip install captum).")
    if spec.is_3d:
        raise MedbenchError(f"explanation-stability maps 2D images; {spec.name} is 3D. Choose a 2D dataset "
                            "(e.g. breastmnist, pneumoniamnist, retinamnist).")
    if spec.is_multilabel:
        raise MedbenchError(f"explanation-stability explains one true class per image; {spec.name} is multi-label.")
    entries = [e for e in list_models(spec.name) if e.size == ctx.size and (not opts.models or e.id in opts.models)]
    missing = sorted(set(opts.models) - {e.id for e in entries})
    if missing:
        raise MedbenchError(f"option models: no zoo model {', '.join(missing)} for {spec.name} at {ctx.size} px "
                            f"(see medbench zoo list --dataset {spec.name}).")
    if not entries:
        raise MedbenchError(f"The zoo has no model for {spec.name} at {ctx.size} px to explain.")
    s = _subset(ctx, opts.n_images)
    shown = np.arange(min(opts.n_show, len(s.ids)))
    results, by_id, admissions = [], {e.id: e for e in entries}, []
    for entry in entries:
        ctx.log(f"{entry.id}: attributions ({', '.join(opts.methods)}) on {len(s.ids)} images")
        model = load_entry_model(entry, folder=entry_folder(entry))
        ctx.models[entry.id] = entry.weights.sha256
        admissions.append(_admission(ctx, entry.id, model))
        note = retrain_block(entry, opts)
        seed_models = []
        if note is None:
            for seed in opts.retrain_seeds:
                m, sha = retrain(entry, seed, ctx, opts.retrain_epochs)
                seed_models.append((seed, m, sha))
                ctx.models[f"{entry.id} retrained, seed {seed}"] = sha
        results.append(_model_scores(entry, model, entry.weights.sha256, s, ctx, shown, seed_models, note))
    details = Details(indices=[int(i) for i in s.ids], shown=[int(s.ids[i]) for i in shown],
                      shown_labels=[spec.class_names[int(s.y[i])] for i in shown],
                      images=[image_png(s.x[i]) for i in shown], models=results)
    return _conclude(details, admissions, by_id, ctx)


def rederive(old: Result, ctx: StudyContext) -> StudyOutcome:
    """``old``'s conclusions again: the stored maps and per-image scores are kept (nothing is attributed,
    attacked or retrained); every zoo model's clean test predictions go through the admission rule, and
    the comparisons, findings, summary and claims are computed again from the stored scores."""
    from ..zoo import load_entry_model
    from ..zoo.registry import entry_folder, get_entry

    entries, admissions = {}, []
    for m in old.details.models:
        entry = get_entry(m.model_id, ctx.dataset)
        if entry.weights.sha256 != m.weights_sha256:
            raise MedbenchError(f"--rederive: the zoo's {m.model_id} ({ctx.dataset}) has other weights than the "
                                "earlier result explained; run the study in full.")
        entries[m.model_id] = entry
        admissions.append(_admission(ctx, m.model_id, load_entry_model(entry, folder=entry_folder(entry))))
    outcome = _conclude(old.details, admissions, entries, ctx)
    outcome.derived_how = ("the maps, per-image stability scores and retrainings are the earlier result's (nothing "
                           "was attributed, attacked or retrained); every model's clean test predictions were "
                           "computed again and put through the current protocol's admission rule, and the "
                           "comparisons (from the stored per-image scores), findings, summary and claims recomputed")
    return outcome


def _admission(ctx: StudyContext, model_id: str, model: nn.Module) -> Admission:
    """``model``'s clean test predictions through the harness's admission rule."""
    import medbench
    from ..data import get_spec, load_dataset
    from ..inference import default_batch_size, predict_logits

    spec = get_spec(ctx.dataset)
    split = load_dataset(ctx.dataset, "test", ctx.size, ctx.data_root)
    logits = predict_logits(model, split.images, batch_size=default_batch_size(tuple(split.images.shape[1:])),
                            device="cpu", progress=False)
    pred = metrics.predictions(metrics.probabilities(logits, spec.task), spec.task)
    return admit(model_id, split.labels, pred, spec, medbench.load_protocol())


def _conclude(details: Details, admissions: list[Admission], entries: dict, ctx: StudyContext) -> StudyOutcome:
    """Admission on each model's record, the comparisons of admitted pairs, findings, summary and claims."""
    opts: Options = ctx.options
    gate = {a.model: a for a in admissions}
    models = [m.model_copy(update={"admitted": gate[m.model_id].admitted,
                                   "clean_balanced_accuracy": gate[m.model_id].balanced_accuracy,
                                   "majority_share": gate[m.model_id].majority_share}) for m in details.models]
    comparisons, notes = _comparisons(models, entries, opts, ctx.seed)
    details = details.model_copy(update={"models": models, "comparisons": comparisons, "notes": notes})
    return StudyOutcome(summary=_summary(details, opts, admissions), findings=_findings(details, opts),
                        details=details, admissions=admissions, claims=_claims(details, opts, admissions))


def _findings(d: Details, opts: Options) -> list[Finding]:
    head = HEADLINE if HEADLINE in opts.methods else opts.methods[0]
    label = METHOD_LABEL[head]
    out = []
    for m in d.models:
        ms = m.method(head)
        if ms.seeds is not None:
            out.append(Finding(key=f"seeds_{m.model_id}", unit="score", value=ms.seeds.spearman, ci=ms.seeds.spearman_ci,
                               label=f"{m.model_id}: {label.lower()}, across {len(m.retrained) + 1} seeds",
                               paper="training is not stable: the regions found depend mainly on the initialisation "
                                     "and the training run (3D grey-matter maps, Alzheimer's disease)",
                               note=f"mean pairwise Spearman of the maps of the zoo model and its {m.recipe} recipe "
                                    f"retrained with seed {', '.join(m.retrained)}; top-{opts.top_k:.0%} overlap "
                                    f"{ms.seeds.topk:.3f}"))
    for m in d.models:
        ms = m.method(head)
        out.append(Finding(key=f"noise_{m.model_id}", unit="score", value=ms.noise.spearman, ci=ms.noise.spearman_ci,
                           label=f"{m.model_id}: {label.lower()}, noise σ {opts.noise_sigma:g}",
                           note=f"Spearman of map(x) and map(x + Gaussian noise); top-{opts.top_k:.0%} overlap "
                                f"{ms.noise.topk:.3f}"))
    for m in d.models:
        ms = m.method(head)
        out.append(Finding(key=f"adv_{m.model_id}", unit="score", value=ms.adversarial.spearman,
                           ci=ms.adversarial.spearman_ci,
                           label=f"{m.model_id}: {label.lower()}, APGD-CE {opts.adv_eps * 255:.3g}/255",
                           note=f"Spearman of map(x) and map(x_adv), Linf; top-{opts.top_k:.0%} overlap "
                                f"{ms.adversarial.topk:.3f}; accuracy on the subset "
                                f"{m.subset_accuracy:.0%} clean, {m.adv_accuracy:.0%} attacked" + _gate_note(m)))
    for c in d.comparisons:
        if c.score != "adversarial":
            continue
        out.append(Finding(key=f"paired_{c.method}_{c.model}", unit="score", value=c.difference, ci=c.ci, reference=0.0,
                           reference_label="no difference",
                           label=f"{c.model} vs {c.baseline_recipe.upper()}: {METHOD_LABEL[c.method].lower()}, APGD-CE",
                           test=StatTest(name=f"one-sided paired bootstrap ({opts.bootstrap:,} resamples)",
                                         null=f"the maps of the {c.recipe} model are no more stable under attack "
                                              f"than those of the {c.baseline_recipe} model",
                                         statistic=c.difference, p_value=c.p_value, resamples=opts.bootstrap),
                           note=f"difference in Spearman from {c.baseline}, paired over images" + (
                               "" if c.wilcoxon_p is None else f"; Wilcoxon signed-rank (two-sided) p = {c.wilcoxon_p:.3g}")))
    return out


def _gate_note(m: ModelScores) -> str:
    if m.admitted is None:
        return ""
    share = f"clean test BA {m.clean_balanced_accuracy:.3f}, {m.majority_share:.0%} of the test images in one class"
    return f"; {share}" + ("" if m.admitted else "; refused by the admission rule: no comparison rests on it")


def _summary(d: Details, opts: Options, admissions: list[Admission]) -> str:
    head = HEADLINE if HEADLINE in opts.methods else opts.methods[0]
    admitted = [m for m in d.models if m.admitted is not False]
    refused = [m.model_id for m in d.models if m.admitted is False]
    parts = []
    seeds = [(m.model_id, m.method(head).seeds) for m in admitted if m.method(head).seeds is not None]
    if seeds:
        parts.append("across seeds " + "; ".join(f"{i} {s.spearman:.2f}" for i, s in seeds))
    if admitted:
        adv = sorted(((m.method(head).adversarial.spearman, m.model_id) for m in admitted), reverse=True)
        parts.append(f"under attack from {adv[0][0]:.2f} ({adv[0][1]}) to {adv[-1][0]:.2f} ({adv[-1][1]})")
        noise = [m.method(head).noise.spearman for m in admitted]
        parts.append(f"under noise {min(noise):.2f}-{max(noise):.2f}")
    text = (f"{METHOD_LABEL[head]} map stability (Spearman, 1 = identical) on {len(d.indices)} test images, admitted "
            "models: " + (", ".join(parts) if parts else "none") + ".")
    for c in d.comparisons:
        if c.method == head and c.score == "adversarial":
            text += (f" {c.model} vs {c.baseline} under attack: {c.difference:+.2f} "
                     f"(one-sided paired bootstrap {format_p(c.p_value, opts.bootstrap)} for 'more stable').")
    if refused:
        text += f" Refused by the admission rule, reported but left out of every comparison: {', '.join(refused)}."
    return text


def seeds_against_noise(m: ModelScores, method: str, opts: Options, seed: int):
    """(mean per-image Spearman under noise minus across seeds, its CI, the one-sided p of H1: maps vary
    more across retrainings than under input noise), or None without seed scores."""
    ms = m.method(method)
    if ms is None or ms.seeds is None:
        return None
    diff, ci, means = bootstrap_mean(np.asarray(ms.noise.per_image_spearman) - np.asarray(ms.seeds.per_image_spearman),
                                     opts.bootstrap, seed)
    return diff, ci, (1 + int((means <= 0).sum())) / (len(means) + 1)


def _claims(d: Details, opts: Options, admissions: list[Admission]) -> list[Claim]:
    """Thibeau-Sutre et al.'s claim, tested per admitted retrained model, and their setting (not run here)."""
    head = HEADLINE if HEADLINE in opts.methods else opts.methods[0]
    paper = f"Thibeau-Sutre et al. 2020: {PAPER_CLAIM}"
    out = []
    for m in d.models:
        test = seeds_against_noise(m, head, opts, 0)
        if test is None:
            continue
        claim = f"Attribution maps depend mainly on the training run ({m.model_id}, {m.recipe} retrained)"
        if m.admitted is False:
            out.append(Claim(claim=claim, paper=paper, verdict="not run",
                             reason=f"{m.model_id} is refused by the admission rule: no claim rests on its maps"))
            continue
        diff, ci, p = test
        ms = m.method(head)
        ok = p < ALPHA
        out.append(Claim(
            claim=claim, paper=paper, verdict="reproduced" if ok else "not reproduced",
            here=f"{METHOD_LABEL[head]} maps of {m.model_id} and its recipe retrained with seeds "
                 f"{', '.join(m.retrained)}: Spearman {ms.seeds.spearman:.2f} across seeds vs {ms.noise.spearman:.2f} "
                 f"under Gaussian noise σ {opts.noise_sigma:g}; difference {diff:+.2f} "
                 f"[{ci.low:+.2f}, {ci.high:+.2f}]",
            test=f"one-sided paired bootstrap over {len(d.indices)} images ({opts.bootstrap:,} resamples; H1: the "
                 "maps differ more across retrainings than under input noise)",
            p_value=float(f"{p:.6g}"), resamples=opts.bootstrap,
            reason="admitted; the maps of retrained models are " + ("" if ok else "not ") + "significantly less alike "
                   "than the same model's maps under small input noise (2D MedMNIST images, not the paper's 3D MRI)"))
    if not out:
        out.append(Claim(claim="Attribution maps depend mainly on the training run", paper=paper, verdict="not run",
                         reason="no model was retrained with other seeds (option retrain_seeds)"))
    out.append(Claim(claim="The same on 3D grey-matter MRI of Alzheimer's disease (the paper's setting)", paper=paper,
                     verdict="not run", reason="3D brain MRI (ADNI) is not in our data, nor the paper's 3D CNN; here "
                     "2D MedMNIST images and the zoo's 2D models"))
    return out


# ----------------------------------------------------------------------------- duration estimate

def _train_seconds(dataset: str, model_id: str) -> float | None:
    """The committed training log's wall time of a zoo model, None without one."""
    from ..paths import leaderboard_root

    log = leaderboard_root() / "results" / dataset / f"{model_id}.train.jsonl"
    try:
        return float(json.loads(log.read_text().strip().splitlines()[-1])["wall_time_s"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _attribution_rate(dataset: str, size: int) -> float | None:
    """Seconds per model and image of a committed result's whole run (its retrainings included, so an
    upper bound): the dataset's own result, else the median over the others; None without one."""
    from ..paths import leaderboard_root

    rates = {}
    for path in sorted((leaderboard_root() / "studies" / "explanation-stability").glob(f"*_{size}px.json")):
        try:
            doc = json.loads(path.read_text())
            prov, details = doc["provenance"], doc["details"]
            wall = float((prov.get("derived_from") or prov)["wall_time_s"])
            rates[doc["dataset"]] = wall / (len(details["models"]) * len(details["indices"]))
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
            continue
    if dataset in rates:
        return rates[dataset]
    return float(np.median(list(rates.values()))) if rates else None


def estimate(dataset: str, size: int, opts: Options) -> str | None:
    """A one-line duration estimate for ``opts`` on ``dataset``: retrainings from the zoo's committed
    training logs, the rest from the committed results' time per model and image; None without them."""
    from ..zoo import list_models
    from ..cli.estimate import fmt_duration

    entries = [e for e in list_models(dataset) if e.size == size and (not opts.models or e.id in opts.models)]
    retrain = [e for e in entries if retrain_block(e, opts) is None]
    train_s = 0.0
    for e in retrain:
        per_run = _train_seconds(dataset, e.id)
        if per_run is None:
            return None
        train_s += per_run * len(opts.retrain_seeds) * (opts.retrain_epochs or e.recipe.epochs) / e.recipe.epochs
    rate = _attribution_rate(dataset, size)
    if rate is None:
        return None
    attr_s = rate * len(entries) * opts.n_images * len(opts.methods) / len(METHODS)
    if retrain:
        plural = "s" if len(retrain) != 1 else ""
        training = (f"{len(retrain)} model{plural} retrained with {len(opts.retrain_seeds)} more seeds "
                    f"~{fmt_duration(train_s)} (cached ones in --work-dir cost nothing; --set retrain_seeds=[] "
                    "skips them)")
    else:
        training = "no retraining"
    return (f"expected duration: ~{fmt_duration(train_s + attr_s)} on one CPU thread: {training}; attributions "
            f"of {len(entries)} models on {opts.n_images} images ~{fmt_duration(attr_s)}.")


STUDY = Study(
    name="explanation-stability",
    title="Explanation stability",
    question="Are a model's saliency maps stable across retrainings with other seeds, small input noise and "
             "adversarial perturbations?",
    paper="E. Thibeau-Sutre, O. Colliot, D. Dormont, N. Burgos. Visualization approach to assess the robustness of "
          "neural networks for medical image classification. SPIE Medical Imaging 2020",
    paper_url="https://arxiv.org/abs/1911.08264",
    method="For every zoo model of the dataset, attribution maps of the true class's logit from captum "
           "(`Saliency` (absolute gradient), `IntegratedGradients` (baseline 0, Gauss-Legendre steps), `Occlusion` "
           "(4 x 4 window, stride 2, baseline 0)) on a fixed seeded subset of the test split; each map is reduced "
           "to |attribution| summed over channels. Two maps are compared by the Spearman rank correlation of their "
           "pixels (-1 to 1) and the overlap of their top-10% pixels (0 to 1); both are 1 for identical maps. "
           "Scores: (a) the mean pairwise similarity across the zoo model and retrainings of its recipe with other "
           "seeds by `medbench train` (ERM by default: adversarial recipes cost several times more); (b) map(x) "
           "against map(x + Gaussian noise), averaged over draws; (c) map(x) against map(x_adv), x_adv from "
           "pyautoattack's APGD-CE at Linf 2/255 (the highest-loss point for every image). Means over images with "
           "95% percentile-bootstrap intervals; adversarially trained against ERM models of the same architecture "
           "by a one-sided paired bootstrap over images. captum's `sensitivity_max` of the Saliency maps is "
           "reported beside (b) as a cross-check. Every model passes through the harness's admission rule on its "
           "clean test predictions; a refused model's scores are shown, but no comparison or claim rests on it.",
    result_type=Result,
    run=run,
    options=Options,
    version="2",
    rederive=rederive,
    estimate=estimate,
)
