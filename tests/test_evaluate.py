"""Clean evaluation: benchmark() on trained and synthetic models, the CLI, contract errors, resume."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from medmnist.evaluator import getACC, getAUC

import medbench
from medbench.models.architectures import build_architecture
from medbench.cli import main
from medbench.errors import InvalidModelError
from medbench.evaluate import benchmark
from medbench.schema import EvaluationResult
from medbench.models.weights import save_weights

from conftest import need_real, write_fake_medmnist


@pytest.mark.realdata
def test_trained_model_clearly_above_chance_and_matches_medmnist_evaluator(real_root, breast_model):
    result = benchmark(breast_model, "breastmnist", data_root=real_root, progress=False)
    c = result.clean
    assert c.n == 156 and c.balanced_accuracy > 0.65  # chance is 0.5
    assert c.ci["balanced_accuracy"].low < c.balanced_accuracy < c.ci["balanced_accuracy"].high
    # the same probabilities through medmnist's own evaluator
    images, labels = medbench.load_dataset("breastmnist", root=real_root)
    with torch.no_grad():
        probs = torch.softmax(breast_model(images.float() / 255), 1).numpy()
    assert c.accuracy == pytest.approx(getACC(labels.reshape(-1, 1), probs, "binary-class"))
    assert c.auc == pytest.approx(getAUC(labels.reshape(-1, 1), probs, "binary-class"))
    p = result.provenance
    assert p.data_md5 == "750601b1f35ba3300ea97c75c52ff8f6" and p.protocol_version == medbench.protocol.CURRENT_VERSION
    assert p.torch_version == torch.__version__ and p.wall_time_s > 0
    again = benchmark(breast_model, "breastmnist", data_root=real_root, progress=False)
    assert again.clean == result.clean  # deterministic


@pytest.mark.realdata
def test_cli_evaluate_checkpoint(real_root, breast_model, tmp_path, capsys):
    weights = tmp_path / "model.safetensors"
    save_weights(breast_model, weights)
    out = tmp_path / "result.json"
    code = main(["evaluate", "--weights", str(weights), "--arch", "smallcnn", "--dataset", "breastmnist",
                 "--data-root", str(real_root), "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    result = EvaluationResult.from_json(out)
    assert f"{result.clean.balanced_accuracy:.3f} [" in printed and "per-class recall" in printed
    assert result.provenance.weights_sha256 and len(result.provenance.weights_sha256) == 64
    direct = benchmark(breast_model, "breastmnist", data_root=real_root, progress=False)
    assert result.clean.balanced_accuracy == pytest.approx(direct.clean.balanced_accuracy)


def test_synthetic_all_task_types(tmp_path, monkeypatch):
    """Every task type and layout runs end to end on synthetic files (checksums are not official)."""
    monkeypatch.setattr("medbench.evaluate.load_dataset",
                        lambda name, split, size, root: medbench.load_dataset(name, split, size, root, verify=False))
    for name in ("chestmnist", "retinamnist", "nodulemnist3d", "organamnist"):
        write_fake_medmnist(tmp_path, name, n=(4, 4, 40))
        spec = medbench.get_spec(name)
        model = build_architecture("smallcnn", in_channels=spec.n_channels, num_classes=spec.num_classes,
                                   width=4, dims=spec.dims)
        r = benchmark(model, name, data_root=tmp_path, progress=False, checks=False)
        assert r.clean.n == 40 and 0 <= r.clean.balanced_accuracy <= 1
        assert len(r.clean.per_class_recall) == spec.num_classes
        assert json.loads(r.to_json())["task"] == spec.task


def test_single_logit_binary_model_is_wrapped(tmp_path, monkeypatch):
    monkeypatch.setattr("medbench.evaluate.load_dataset",
                        lambda name, split, size, root: medbench.load_dataset(name, split, size, root, verify=False))
    write_fake_medmnist(tmp_path, "breastmnist", n=(4, 4, 30))
    one = build_architecture("smallcnn", in_channels=1, num_classes=1, width=4)
    r = benchmark(one, "breastmnist", data_root=tmp_path, progress=False, checks=False)
    images, labels = medbench.load_dataset("breastmnist", root=tmp_path, verify=False)
    with torch.no_grad():
        p1 = torch.sigmoid(one(images.float() / 255)).numpy()[:, 0]
    assert r.clean.accuracy == pytest.approx(np.mean((p1 > 0.5) == labels))


@pytest.mark.realdata
def test_contract_errors_are_clear(real_root):
    need_real(real_root, "retinamnist.npz")
    wrong_k = build_architecture("smallcnn", in_channels=3, num_classes=4, width=4)
    with pytest.raises(InvalidModelError, match="returns 4 logits but retinamnist has 5 classes"):
        benchmark(wrong_k, "retinamnist", data_root=real_root, progress=False)
    wrong_c = build_architecture("smallcnn", in_channels=1, num_classes=5, width=4)
    with pytest.raises(InvalidModelError, match=r"3 channel\(s\)"):
        benchmark(wrong_c, "retinamnist", data_root=real_root, progress=False)


class _GradientStepInForward(torch.nn.Module):
    """A 'purification' defence: one input-gradient step inside forward (needs autograd)."""

    def __init__(self, inner, enable_grad: bool):
        super().__init__()
        self.inner, self.enable_grad = inner, enable_grad

    def forward(self, x):
        with torch.set_grad_enabled(self.enable_grad or torch.is_grad_enabled()):
            z = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.inner(z).logsumexp(1).sum(), z)
        return self.inner((x - 0.01 * g.sign()).clamp(0, 1))


@pytest.mark.realdata
@pytest.mark.parametrize("enable_grad", [False, True])
def test_autograd_in_forward_is_named_not_mistaken_for_a_shape_error(real_root, enable_grad):
    need_real(real_root, "breastmnist.npz")
    model = _GradientStepInForward(build_architecture("smallcnn", in_channels=1, num_classes=2, width=4), enable_grad)
    # without enable_grad forward breaks under no_grad; with it, forward runs and admission refuses it
    match = "no_autograd_in_forward" if enable_grad else "autograd inside forward"
    with pytest.raises(InvalidModelError, match=match) as info:
        benchmark(model, "breastmnist", threats="clean", data_root=real_root, progress=False)
    assert "channel" not in str(info.value)


@pytest.mark.realdata
def test_resume_keeps_finished_cells(real_root, breast_model, tmp_path, monkeypatch):
    """An interrupted run leaves its finished cells beside ``out``; the re-run uses them (the clean pass is
    not run again) and ends with the result an uninterrupted run writes; another model's cells are never
    mixed in; the cells go when the result is written."""
    import medbench.corruptions.evaluation as corruption_stage
    import medbench.evaluate as ev
    from medbench.matrix.assemble import identity

    out, cells = tmp_path / "r.json", tmp_path / "r.json.cells"
    protocol = medbench.load_protocol().derive(**{"corruptions.include": ["pixelate"]})
    calls = []
    real_clean, real_corruptions = ev.run_clean, corruption_stage.run
    monkeypatch.setattr(ev, "run_clean", lambda ctx: calls.append(ctx.model) or real_clean(ctx))

    def interrupted(ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(corruption_stage, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        benchmark(breast_model, "breastmnist", threats="clean,corruptions", protocol=protocol, data_root=real_root,
                  progress=False, out=out)
    assert not out.exists() and len(list(cells.glob("cells/*/*.json"))) == 2  # admission and clean kept
    monkeypatch.setattr(corruption_stage, "run", real_corruptions)
    resumed = benchmark(breast_model, "breastmnist", threats="clean,corruptions", protocol=protocol,
                        data_root=real_root, progress=False, out=out)
    assert len(calls) == 1 and out.is_file() and not cells.exists()
    fresh = benchmark(breast_model, "breastmnist", threats="clean,corruptions", protocol=protocol,
                      data_root=real_root, progress=False)
    assert identity(resumed) == identity(fresh)
    # another model's run on the same path computes its own cells
    other = copy.deepcopy(breast_model)
    with torch.no_grad():
        next(other.parameters()).mul_(0.5)
    benchmark(other, "breastmnist", threats="clean", protocol=protocol, data_root=real_root, progress=False,
              out=out, allow_unranked=True)
    assert len(calls) == 3


def test_cli_help_and_unknown_dataset(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--help"])
    assert exc.value.code == 0
    assert "--weights" in capsys.readouterr().out
    assert main(["data", "info", "nosuchmnist"]) == 1
    assert "Valid names" in capsys.readouterr().err


def test_all_means_every_threat_the_protocol_defines_for_the_dataset():
    from medbench.data import get_spec
    from medbench.evaluate import normalise_threats, protocol_threats

    proto = medbench.load_protocol()
    assert protocol_threats(get_spec("breastmnist"), proto) == ["clean", "corruptions", "Linf", "L2", "curves"]
    assert "L2" not in protocol_threats(get_spec("adrenalmnist3d"), proto)  # no L2 track in 3D
    assert protocol_threats(get_spec("chestmnist"), proto) == ["clean", "corruptions"]  # multi-label
    assert normalise_threats("all", get_spec("vesselmnist3d"), proto) == ["clean", "corruptions", "Linf", "curves"]
    assert normalise_threats(["Linf"], get_spec("breastmnist"), proto) == ["clean", "Linf"]


@pytest.mark.parametrize("content, message", [(None, "does not exist"), (b"garbage" * 4, "not a valid safetensors")])
def test_cli_bad_weights_file_is_a_clear_error(tmp_path, capsys, content, message):
    path = tmp_path / "model.safetensors"
    if content is not None:
        path.write_bytes(content)
    code = main(["evaluate", "--weights", str(path), "--arch", "smallcnn", "--dataset", "breastmnist", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and message in err and str(path) in err and "Traceback" not in err
    assert content is None or path.read_bytes() == content  # nothing lost
