"""Extra attacks run by medbench: a plugin on one threat's protocol subset, written as an attack file.

``run_extra_attack`` loads the zoo model and the threat's subset, attacks (by default) only the points
that the committed AutoAttack result left robust, and keeps the breaks: inputs inside the ball (checked
in float64 against the uint8 test images / 255) that the model misclassifies with finite logits.
``write_attack_files`` writes them as ``<name>.npz`` + ``<name>.yaml`` valid under ``AttackSubmission``,
to be verified like any submitted attack.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import MedbenchError
from ..schema import AttackSubmission, EvaluationResult
from .plugins import Attack, AttackOutput, UnknownAttackError, get_attack, list_attacks, lp_distance

__all__ = [
    "ExtraAttackRun", "UnknownThreatError", "committed_result", "file_name", "project_into_ball",
    "run_extra_attack", "run_on_batches", "threat_entry", "write_attack_files",
]

SHRINK = 1e-4  # relative margin kept inside the ball when a float32 example sits on (or just past) its boundary


class UnknownThreatError(MedbenchError, ValueError):
    """A threat label the protocol does not define."""


def threat_entry(protocol, label: str) -> dict:
    """The protocol's threat entry ``{norm, eps, label}`` (eps at 28 px) for ``label``, e.g. "Linf-2/255"."""
    entries = [t for group in protocol["adversarial"]["threats"].values() for t in group]
    for t in entries:
        if t["label"] == label:
            return t
    labels = [t["label"] for t in entries]
    close = difflib.get_close_matches(label, labels, n=3, cutoff=0.3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownThreatError(f"Protocol {protocol.version} has no threat {label!r}.{hint} "
                             f"Threats: {', '.join(labels)}.")


def committed_result(dataset: str, model_id: str) -> EvaluationResult | None:
    """``<leaderboard>/results/<dataset>/<model_id>.json``, or None when there is none."""
    from ..paths import leaderboard_root

    path = leaderboard_root() / "results" / dataset / f"{model_id}.json"
    return EvaluationResult.from_json(path) if path.is_file() else None


def file_name(model_id: str, dataset: str, attack: str, threat: str) -> str:
    """The attack file's stem, e.g. ``breastmnist_Baseline_ResNet8_ERM_fmn_Linf-2_255``."""
    return f"{dataset}_{model_id}_{attack}_{threat.replace('/', '_')}"


def run_on_batches(attack: Attack, model, x: torch.Tensor, y: torch.Tensor, *, norm: str, eps: float, seed: int,
                   batch_size: int, progress: bool = True, desc: str = "attack") -> AttackOutput:
    """``attack`` on ``x, y`` in batches of ``batch_size`` (each batch seeded ``seed``), outputs concatenated."""
    parts: list[AttackOutput] = []
    with tqdm(total=len(x), desc=desc, unit="img", disable=not progress) as bar:
        for start in range(0, len(x), batch_size):
            parts.append(attack.run(model, x[start:start + batch_size], y[start:start + batch_size], norm=norm,
                                    eps=eps, seed=seed))
            bar.update(len(parts[-1].predicted))
    cat = lambda key: np.concatenate([getattr(p, key) for p in parts]) if parts else np.empty(0)  # noqa: E731
    return AttackOutput(
        adversarial=torch.cat([p.adversarial for p in parts]) if parts else x[:0].cpu(),
        predicted=cat("predicted").astype(np.int64), distance=cat("distance"), finite=cat("finite").astype(bool),
        min_norm=cat("min_norm") if attack.minimum_norm else None,
        nonfinite_outputs=sum(p.nonfinite_outputs for p in parts))


def project_into_ball(adv: torch.Tensor, x64: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """``adv`` as float32 in [0, 1] whose float64 distance to ``x64`` is at most ``eps``: examples past
    ``eps * (1 - SHRINK)`` (float32 rounding at the boundary) are pulled in to that radius."""
    delta = adv.double() - x64
    flat = delta.flatten(1)
    radius = eps * (1 - SHRINK)
    if norm == "Linf":
        delta = delta.clamp(-radius, radius)
    else:
        n = flat.norm(dim=1).clamp_min(1e-30)
        delta = delta * (radius / n).clamp(max=1.0).view(-1, *[1] * (delta.dim() - 1))
    return (x64 + delta).clamp(0, 1).float()


@dataclass
class ExtraAttackRun:
    """One extra attack on one threat: what was attacked and what broke."""

    model_id: str
    dataset: str
    size: int
    threat: str
    norm: str
    eps: float  # scaled for the image size
    attack: Attack
    steps: int
    weights_sha256: str
    protocol_version: str
    subset_sha256: str
    indices: np.ndarray  # subset positions in the test split (all of them, in order)
    labels: np.ndarray  # their labels
    num_classes: int
    attacked: np.ndarray  # bool per subset point: attacked in this run
    why_attacked: str  # which points were attacked, and why
    output: AttackOutput  # for the attacked points, in subset order
    images: np.ndarray  # float32 adversarial inputs of the breaks, inside the ball
    breaks: np.ndarray  # bool per attacked point: kept as a break
    lost_to_ball: int  # misclassified by the attack's output, but no longer after the float64 ball check
    wall_time_s: float

    @property
    def broken_indices(self) -> np.ndarray:
        """Test-split positions of the breaks."""
        return self.indices[self.attacked][self.breaks]


def _targets(result: EvaluationResult | None, threat: str, subset, weights_sha256: str, all_points: bool):
    n = len(subset.indices)
    if all_points:
        return np.ones(n, bool), f"all {n} subset points (--all-points)"
    if result is None:
        return np.ones(n, bool), f"all {n} subset points (no committed result for this model)"
    section = result.adversarial.get(threat)
    problem = None
    if section is None:
        problem = f"the committed result has no {threat} section"
    elif section.subset.indices_sha256 != subset.info.indices_sha256:
        problem = "the committed result used another subset"
    elif result.provenance.weights_sha256 != weights_sha256:
        problem = "the committed result is for other weights"
    if problem is not None:
        return np.ones(n, bool), f"all {n} subset points ({problem})"
    flags = np.asarray(section.robust_flags, dtype=bool)
    return flags, (f"the {int(flags.sum())} of {n} subset points that the committed AutoAttack result left robust "
                   "(--all-points attacks all)")


def run_extra_attack(model_id: str, dataset: str, threat: str, attack_name: str, *, steps: int = 100,
                     all_points: bool = False, size: int = 28, data_root=None, device: str | None = None,
                     batch_size: int | None = None, seed: int | None = None, progress: bool = True,
                     protocol=None, minimum_norm: bool = False) -> ExtraAttackRun:
    """Run plugin ``attack_name`` on zoo model ``model_id`` for ``threat`` (a protocol label); with
    ``minimum_norm`` the plugin must be a minimum-norm attack (else :class:`UnknownAttackError`).
    ``batch_size``: points per plugin call (default: AutoAttack's chunk of 250, else 64)."""
    from ..data import get_spec, load_dataset
    from ..inference import default_device
    from ..protocol import load_protocol
    from ..zoo import get_entry
    from ..zoo.loader import load_entry_model
    from ..zoo.registry import entry_folder
    from .autoattack import check_supported, scaled_eps
    from .subset import evaluation_subset

    protocol = protocol or load_protocol()
    spec = get_spec(dataset)
    entry = threat_entry(protocol, threat)
    check_supported(spec, entry["norm"], protocol)
    norm, eps = entry["norm"], scaled_eps(entry["norm"], entry["eps"], size, spec)
    plugin = get_attack(attack_name, steps=steps, spec=spec, protocol=protocol, size=size)
    if minimum_norm and not plugin.minimum_norm:
        names = [n for n in list_attacks() if get_attack(n, spec=spec, protocol=protocol).minimum_norm]
        raise UnknownAttackError(f"{attack_name} is not a minimum-norm attack; --minimum-norm needs one of "
                                 f"{', '.join(names)}.")
    zoo_entry = get_entry(model_id, dataset)
    dev = torch.device(device) if device else default_device()
    model = load_entry_model(zoo_entry, folder=entry_folder(zoo_entry), device=dev)
    split = load_dataset(dataset, "test", size, data_root)
    labels = np.asarray(split.labels).reshape(-1)
    subset = evaluation_subset(dataset, labels, protocol)
    attacked, why = _targets(committed_result(dataset, model_id), threat, subset, zoo_entry.weights.sha256,
                             all_points)
    positions = subset.indices[attacked]
    x_u8 = split.images[torch.as_tensor(positions, dtype=torch.long)]
    x, y = x_u8.float().div(255).to(dev), torch.as_tensor(labels[positions]).to(dev)
    t0 = time.perf_counter()
    batch_size = batch_size or (250 if plugin.name == "autoattack" else 64)
    out = run_on_batches(plugin, model, x, y, norm=norm, eps=eps, seed=protocol["seed"] if seed is None else seed,
                         batch_size=batch_size, progress=progress, desc=f"{plugin.display_name} {threat} {model_id}")
    wall = time.perf_counter() - t0
    candidates = out.broken(labels[positions])
    x64 = x_u8.double().div(255)
    images = project_into_ball(out.adversarial, x64, norm, eps)
    with torch.no_grad():
        logits = model(images.to(dev)).cpu()
    inside = lp_distance(images, x64, norm) <= eps
    wrong = logits.argmax(1).numpy() != labels[positions]
    kept = candidates & inside & wrong & torch.isfinite(logits).all(1).numpy()
    return ExtraAttackRun(
        model_id=model_id, dataset=dataset, size=size, threat=threat, norm=norm, eps=eps, attack=plugin, steps=steps,
        weights_sha256=zoo_entry.weights.sha256, protocol_version=protocol.version,
        subset_sha256=subset.info.indices_sha256, indices=subset.indices, labels=labels[subset.indices],
        num_classes=spec.num_classes, attacked=attacked, why_attacked=why, output=out,
        images=images[torch.as_tensor(kept)].numpy(), breaks=kept, lost_to_ball=int((candidates & ~kept).sum()),
        wall_time_s=wall)


def _npz_bytes(indices: np.ndarray, images: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, indices=indices.astype(np.int64), images=images.astype(np.float32))
    return buffer.getvalue()


def write_attack_files(run: ExtraAttackRun, out_dir: str | Path, *, notes: str | None = None) -> tuple[Path, Path]:
    """``<out_dir>/<name>.npz`` and ``<name>.yaml`` (an :class:`AttackSubmission`) for ``run``'s breaks."""
    import yaml

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = file_name(run.model_id, run.dataset, run.attack.name, run.threat)
    data = _npz_bytes(run.broken_indices, run.images)
    npz, meta = out / f"{name}.npz", out / f"{name}.yaml"
    npz.write_bytes(data)
    summary = (f"{run.attack.display_name} ({run.attack.name}, {run.steps} steps) run by medbench on "
               f"{int(run.attacked.sum())} points: {run.why_attacked}. {len(run.broken_indices)} breaks; "
               f"{run.output.nonfinite_outputs} non-finite output rows.")
    submission = AttackSubmission(
        model_id=run.model_id, dataset=run.dataset, size=run.size, threat=run.threat, attack=run.attack.display_name,
        submitter="medbench", url=run.attack.url, file=npz.name, sha256=hashlib.sha256(data).hexdigest(),
        weights_sha256=run.weights_sha256, notes=" ".join(filter(None, [summary, notes])))
    meta.write_text(yaml.safe_dump(submission.model_dump(exclude_none=True), sort_keys=False))
    return npz, meta


def created_at() -> str:
    """Now, ISO 8601 UTC to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def l2_scale(size: int) -> float:
    """The L2 budget scale at ``size`` (sqrt(H*W / 784), 2D)."""
    return math.sqrt(size * size / 784.0)
