"""Attack plugins: one small interface over AutoAttack and the minimum-norm attacks of foolbox 3.3.4.

An :class:`Attack` takes a model (inputs in [0, 1], logits out), a batch ``x, y`` and one threat
(``norm``, ``eps`` in [0, 1] units, already scaled for the image size) and returns an
:class:`AttackOutput`: inputs inside the ball, the model's class on them, their distance to ``x``
and, for a minimum-norm attack, each point's smallest breaking norm (``inf`` where none was found;
``0`` where ``x`` itself is misclassified). The model is wrapped in ``NonFiniteCounter`` so NaN or
infinite logits are counted, and points whose final logits are not finite are flagged, never counted
as broken. Plugins are registered by name (``get_attack("fmn")``, ``list_attacks()``). L2 FMN uses
foolbox's attack with the paper's projection (:func:`l2_fmn_projected`): foolbox 3.3.4's never projects.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from ..errors import MedbenchError
from ..inference import NonFiniteCounter

__all__ = [
    "Attack", "AttackOutput", "AutoAttackPlugin", "FoolboxMinimumNorm", "UnknownAttackError", "foolbox_class",
    "get_attack", "l2_fmn_projected", "list_attacks", "lp_distance", "register_attack",
]


class UnknownAttackError(MedbenchError, KeyError):
    """No attack plugin of that name, or a norm the plugin does not support."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass
class AttackOutput:
    """One plugin run on a batch of ``n`` points (arrays on the CPU, in the batch's order)."""

    adversarial: torch.Tensor  # n x C x H x W (or 3D), in [0, 1]: x where the attack found nothing
    predicted: np.ndarray  # int64 (n,): the model's class on ``adversarial``
    distance: np.ndarray  # float64 (n,): ||adversarial - x|| in the threat's norm
    finite: np.ndarray  # bool (n,): the model's logits on ``adversarial`` are finite
    min_norm: np.ndarray | None = None  # float64 (n,): smallest breaking norm found (inf: none); None if not min-norm
    nonfinite_outputs: int = 0  # output rows that were NaN or infinite during the whole run

    def broken(self, y: torch.Tensor | np.ndarray) -> np.ndarray:
        """Points misclassified on ``adversarial`` with finite logits (bool, n)."""
        return (self.predicted != np.asarray(y).reshape(-1)) & self.finite


@runtime_checkable
class Attack(Protocol):
    """What every attack plugin provides."""

    name: str  # registry name, e.g. "fmn"
    display_name: str  # shown on the site and in attack files, e.g. "FMN"
    url: str  # the paper
    norms: tuple[str, ...]  # threats it supports: "Linf", "L2"
    minimum_norm: bool  # returns the smallest breaking norm per point (AttackOutput.min_norm)

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str, eps: float,
            seed: int) -> AttackOutput: ...


def lp_distance(a: torch.Tensor, b: torch.Tensor, norm: str) -> np.ndarray:
    """Per-example ``||a - b||`` (``norm`` "Linf" or "L2") as float64."""
    delta = (a.double() - b.double()).flatten(1)
    values = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
    return values.cpu().numpy()


def _predict(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        logits = model(x)
    return logits.argmax(1).cpu().numpy().astype(np.int64), torch.isfinite(logits).all(1).cpu().numpy()


def _check_norm(attack: Attack, norm: str) -> None:
    if norm not in attack.norms:
        raise UnknownAttackError(f"Attack {attack.name!r} supports {', '.join(attack.norms)}, not {norm!r}. "
                                 "See `medbench attack list`.")


class AutoAttackPlugin:
    """pyautoattack through medbench's adapter (``make_autoattack`` / ``attack_chunk``), with the
    protocol's attack set and counts for ``spec``; the batch is attacked as one chunk."""

    name, display_name, norms, minimum_norm = "autoattack", "AutoAttack", ("Linf", "L2"), False
    url = "https://arxiv.org/abs/2003.01690"

    def __init__(self, spec, protocol, *, size: int = 28):
        self.spec, self.protocol, self.size = spec, protocol, size

    def config(self, norm: str, eps: float, seed: int, batch_size: int):
        """The adapter's configuration for this threat, with ``eps`` (already scaled) as given."""
        from .autoattack import attack_config

        base = attack_config(self.spec, norm, eps, self.protocol, size=self.size, batch_size=batch_size, seed=seed)
        return base.model_copy(update={"eps": float(eps)})

    def run(self, model, x, y, *, norm, eps, seed):
        from .autoattack import attack_chunk, make_autoattack

        _check_norm(self, norm)
        counter = NonFiniteCounter(model).eval()
        config = self.config(norm, eps, seed, batch_size=len(x))
        out = attack_chunk(make_autoattack(counter, config, x.device), config, x, y)
        _, finite = _predict(model, out.x_adv)
        return AttackOutput(adversarial=out.x_adv.detach().cpu(), predicted=out.adv_pred.astype(np.int64),
                            distance=lp_distance(out.x_adv, x, norm), finite=finite,
                            nonfinite_outputs=counter.count)


def foolbox_class(name: str) -> Callable[[], type]:
    """A factory of the foolbox attack class ``name`` (imported when called)."""
    def load() -> type:
        import foolbox

        return getattr(foolbox.attacks, name)
    return load


def l2_fmn_projected() -> type:
    """foolbox 3.3.4's ``L2FMNAttack`` with the projection of the paper (Pintor et al. 2021, Algorithm 1):
    onto the L2 ball of radius epsilon around ``x0``. foolbox's own ``project`` scales by
    ``min(1, norms / norms)``, which is 1, so it never projects and returns an early adversarial iterate
    (norm near ``max_stepsize``) instead of a minimal one; everything else is foolbox's."""
    import foolbox
    from foolbox.attacks.gradient_descent_base import clip_lp_norms

    class L2FMNAttackProjected(foolbox.attacks.L2FMNAttack):
        def project(self, x, x0, epsilon):
            return x0 + clip_lp_norms(x - x0, norm=epsilon, p=2)

    return L2FMNAttackProjected


class FoolboxMinimumNorm:
    """A foolbox 3.3.4 minimum-norm attack, called as foolbox documents it:
    ``raw, clipped, success = attack(PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=eps)``.
    ``adversarial`` is foolbox's ``clipped`` (the minimal adversarial projected onto the ball);
    ``min_norm`` is the norm of ``raw`` where the model misclassifies it, else ``inf``."""

    minimum_norm = True

    def __init__(self, name: str, display_name: str, classes: dict[str, Callable[[], type]], *, url: str,
                 steps: int = 100):
        self.name, self.display_name, self.url, self.steps = name, display_name, url, int(steps)
        self.classes = classes  # norm -> factory of the foolbox attack class
        self.norms = tuple(classes)

    def foolbox_attack(self, norm: str):
        """The configured foolbox attack object for ``norm``."""
        _check_norm(self, norm)
        return self.classes[norm]()(steps=self.steps)

    def run(self, model, x, y, *, norm, eps, seed):
        import foolbox

        attack = self.foolbox_attack(norm)
        counter = NonFiniteCounter(model).eval()
        torch.manual_seed(seed)  # FMN and DDN draw nothing at random; kept for plugins that do
        fmodel = foolbox.PyTorchModel(counter, bounds=(0, 1), device=x.device)
        raw, clipped, _ = attack(fmodel, x, y.to(x.device), epsilons=float(eps))
        predicted, finite = _predict(model, clipped)
        raw_pred, raw_finite = _predict(model, raw)
        raw_broken = (raw_pred != y.cpu().numpy()) & raw_finite
        min_norm = np.where(raw_broken, lp_distance(raw, x, norm), np.inf)
        return AttackOutput(adversarial=clipped.detach().cpu(), predicted=predicted,
                            distance=lp_distance(clipped, x, norm), finite=finite, min_norm=min_norm,
                            nonfinite_outputs=counter.count)


# name -> (factory(**options), one-line description). Factories take the options they need and ignore none:
# ``steps`` for the foolbox attacks; ``spec``, ``protocol`` and ``size`` for AutoAttack.
_REGISTRY: dict[str, tuple[Callable[..., Attack], str]] = {}


def register_attack(name: str, description: str):
    """Decorator: register a factory for the plugin ``name``."""
    def wrap(factory):
        _REGISTRY[name] = (factory, description)
        return factory
    return wrap


@register_attack("autoattack", "AutoAttack (pyautoattack 0.2.0) with the protocol's attack set; Linf, L2")
def _autoattack(*, spec, protocol, size: int = 28, **_unused) -> Attack:
    return AutoAttackPlugin(spec, protocol, size=size)


@register_attack("fmn", "Fast Minimum-Norm (Pintor et al. 2021), foolbox LInfFMNAttack / L2FMNAttack (with the "
                        "paper's L2 projection); minimum-norm")
def _fmn(*, steps: int = 100, **_unused) -> Attack:
    return FoolboxMinimumNorm("fmn", "FMN", {"Linf": foolbox_class("LInfFMNAttack"), "L2": l2_fmn_projected},
                              url="https://arxiv.org/abs/2102.12827", steps=steps)


@register_attack("ddn", "Decoupled Direction and Norm (Rony et al. 2019), foolbox DDNAttack; L2, minimum-norm")
def _ddn(*, steps: int = 100, **_unused) -> Attack:
    return FoolboxMinimumNorm("ddn", "DDN", {"L2": foolbox_class("DDNAttack")}, url="https://arxiv.org/abs/1811.09600",
                              steps=steps)


def list_attacks() -> dict[str, str]:
    """Registered plugin names and their one-line descriptions."""
    return {name: description for name, (_, description) in sorted(_REGISTRY.items())}


def get_attack(name: str, **options) -> Attack:
    """The plugin ``name`` built with ``options`` (e.g. ``steps=100``; AutoAttack needs ``spec`` and
    ``protocol``); an unknown name raises :class:`UnknownAttackError` with suggestions."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownAttackError(f"No attack plugin {name!r}.{hint} Known: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name][0](**options)
