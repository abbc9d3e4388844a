"""Admission and sanity checks: each fires on a model (or result) built to violate it and passes on a
normal model trained on real BreastMNIST."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import medbench
from medbench import checks
from medbench.errors import InvalidModelError
from medbench.evaluate import EvalContext, benchmark, prepare_model
from medbench.protocol import load_protocol

pytestmark = pytest.mark.realdata
PROTOCOL = load_protocol().derive(**{"adversarial.subset_size": 32, "adversarial.n_iter": 5,
                                     "adversarial.square_queries": 40, "curves.apgd_n_iter": 5,
                                     "clean.bootstrap_resamples": 50})
ADMISSION = ["deterministic_forward", "outputs_are_logits", "nonzero_input_gradients", "no_autograd_in_forward",
             "buffers_unchanged", "input_contract", "batch_independent", "finite_off_grid"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # tiny model, small batches; CI shares its 2 cores


def _ctx(model: nn.Module, root) -> EvalContext:
    spec = medbench.get_spec("breastmnist")
    split = medbench.load_dataset("breastmnist", "test", root=root)
    net = prepare_model(model, spec, 28, torch.device("cpu"))
    return EvalContext(model=net, spec=spec, split=split, size=28, device=torch.device("cpu"), batch_size=32,
                       seed=0, protocol=PROTOCOL, data_root=root, progress=False)


def _verdicts(model, root) -> dict[str, medbench.schema.CheckVerdict]:
    return {v.name: v for v in checks.admission_checks(_ctx(model, root))}


class Randomised(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(x) + torch.randn(x.shape[0], 2)


class Softmax(Randomised):
    def forward(self, x):
        return torch.softmax(self.m(x), 1)


class StepFunction(Randomised):
    def forward(self, x):  # quantising the input: zero gradient almost everywhere
        return self.m(torch.round(x * 8) / 8)


class Purifier(Randomised):
    def forward(self, x):  # one gradient step of "purification" inside forward (a dynamic defence)
        with torch.inference_mode(False), torch.enable_grad():  # works under the harness's inference_mode probe too
            z = x.clone().detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.m(z).logsumexp(1).sum(), z)
        return self.m((x - 0.01 * g.sign().to(x)).clamp(0, 1))


class StaysInTraining(Randomised):
    def train(self, mode: bool = True):  # ignores .eval(): BatchNorm keeps using and updating batch statistics
        return super().train(True)


class Expects255(Randomised):
    def forward(self, x):  # a model trained on [0, 255] inputs
        return self.m(x / 255)


class ExpectsMinusOneOne(Randomised):
    def forward(self, x):  # a model trained on inputs already normalised to [-1, 1]
        return self.m((x + 1) / 2)


def test_every_admission_check_passes_on_a_normal_model(real_root, breast_model):
    v = _verdicts(breast_model, real_root)
    assert list(v) == ADMISSION
    assert all(c.passed and c.kind == "admission" for c in v.values()), [c.message for c in v.values()]
    assert v["nonzero_input_gradients"].value == 1.0 and v["deterministic_forward"].value == 0.0


@pytest.mark.parametrize("wrapper, check, value_check", [
    (Randomised, "deterministic_forward", lambda v: v > 1e-3),
    (Softmax, "outputs_are_logits", lambda v: v == 1.0),
    (StepFunction, "nonzero_input_gradients", lambda v: v == 0.0),
    (Purifier, "no_autograd_in_forward", lambda v: v >= 1),
    (StaysInTraining, "buffers_unchanged", lambda v: v >= 1),
    (Expects255, "input_contract", lambda v: v > 0.1),
    (ExpectsMinusOneOne, "input_contract", lambda v: v > 0.1),
])
def test_each_admission_check_fires_on_a_model_built_to_violate_it(real_root, breast_model, wrapper, check, value_check):
    ctx = _ctx(wrapper(copy.deepcopy(breast_model)), real_root)  # a copy: some wrappers modify their model
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    v = {c.name: c for c in checks.admission_checks(ctx)}
    assert not v[check].passed and value_check(v[check].value), v[check]
    assert "Fix" in v[check].message or "need" in v[check].message
    for k, t in ctx.model.state_dict().items():  # the checks leave the model as they found it
        torch.testing.assert_close(t, before[k], rtol=0, atol=0)


def test_a_failing_admission_check_stops_benchmark_with_the_rule_and_why(real_root, breast_model):
    with pytest.raises(InvalidModelError, match="outputs_are_logits: .*softmax probabilities.*return the logits"):
        benchmark(Softmax(copy.deepcopy(breast_model)), "breastmnist", threats="Linf", protocol=PROTOCOL, data_root=real_root,
                  progress=False)


def test_single_logit_sigmoid_outputs_are_caught(real_root, breast_model):
    class Sigmoid(Randomised):
        def forward(self, x):
            z = self.m(x)
            return torch.sigmoid(z[:, 1:] - z[:, :1])

    assert not _verdicts(Sigmoid(copy.deepcopy(breast_model)), real_root)["outputs_are_logits"].passed


# ----------------------------------------------------------------------------- sanity

@pytest.fixture(scope="module")
def real_fields(real_root, breast_model):
    """A real result of the normal model (Linf, L2 and curves), as the sanity checks receive it."""
    torch.set_num_threads(1)
    r = benchmark(breast_model, "breastmnist", threats="Linf,L2,curves", protocol=PROTOCOL, data_root=real_root,
                  progress=False)
    return r, {"clean": r.clean, "adversarial": r.adversarial, "curves": r.curves}


def _copy(fields):
    return {"clean": fields["clean"], "curves": fields["curves"].model_copy(deep=True),
            "adversarial": {k: v.model_copy(deep=True) for k, v in fields["adversarial"].items()}}


def test_every_sanity_check_passes_on_a_normal_result(real_root, breast_model, real_fields):
    result, fields = real_fields
    verdicts = checks.sanity_checks(_ctx(breast_model, real_root), fields)
    assert [v.name for v in verdicts] == [f.__name__ for f in checks.SANITY_CHECKS]
    assert all(v.passed for v in verdicts), [v.message for v in verdicts if not v.passed]
    assert result.reliable and result.admitted


def _clean_correct(fields, real_root):
    idx = np.asarray(fields["curves"].subset.indices)
    y = medbench.load_dataset("breastmnist", "test", root=real_root).labels[idx]
    return np.asarray(fields["clean"].predictions)[idx] == y


def _violate(name, f, real_root):
    c = f["curves"]
    ok = _clean_correct(f, real_root)
    if name == "finite_under_attack":
        f["adversarial"]["Linf-2/255"].nonfinite_outputs = 3
    elif name == "apgd_curve_non_increasing":
        c.apgd_ce[-1].balanced_accuracy = c.apgd_ce[-2].balanced_accuracy + 0.05
    elif name == "robust_le_clean":
        adv = f["adversarial"]["Linf-2/255"]
        adv.robust_balanced_accuracy = adv.clean_balanced_accuracy + 0.01
    elif name == "whitebox_beats_square":
        adv = f["adversarial"]["Linf-2/255"]
        i = adv.robust_flags.index(True)
        adv.broken_by = adv.broken_by[:i] + ["square"] + adv.broken_by[i + 1:]
    elif name in ("whitebox_beats_fgsm", "whitebox_beats_noise"):
        # a clean-correct point that APGD at 2/255 and AutoAttack at 2/255 keep, broken by the weaker attack
        still = np.asarray(c.apgd_ce[3].correct) & np.asarray(f["adversarial"]["Linf-2/255"].robust_flags) & ok
        i = int(np.flatnonzero(still)[0])
        points = c.fgsm[3:4] if name == "whitebox_beats_fgsm" else c.noise[:1]
        for p in points:
            p.correct = [v if j != i else False for j, v in enumerate(p.correct)]
            if p.linf_norm is not None:
                p.linf_norm = [v if j != i else 1 / 255 for j, v in enumerate(p.linf_norm)]
    elif name == "chance_at_largest_eps":
        for p in c.apgd_ce:  # a flat curve that never falls: the model keeps 0.9 at every eps
            p.balanced_accuracy = 0.9
    return f


@pytest.mark.parametrize("name", [f.__name__ for f in checks.SANITY_CHECKS])
def test_each_sanity_check_fires_on_a_result_built_to_violate_it(real_root, breast_model, real_fields, name):
    fields = _violate(name, _copy(real_fields[1]), real_root)
    verdicts = {v.name: v for v in checks.sanity_checks(_ctx(breast_model, real_root), fields)}
    assert not verdicts[name].passed and verdicts[name].kind == "sanity", verdicts[name]
    assert [n for n, v in verdicts.items() if not v.passed] == [name]  # and only it
