"""The lite track's masking guard (protocol lite2, issue "A gate that holds", item 3), on real BreastMNIST with
the zoo's ERM ResNet-8 wrapped the way a careless or hostile submitter would wrap it: an attack detector
(off-grid inputs rounded back to the uint8 grid, zero gradient there), the same with a tiny gradient leak, and
NaN logits off the grid, and (no rounding) a tiny oscillating term whose gradient misleads every
gradient-based attack. None of them may be ordered among the lite results by robust balanced accuracy, and
each is told why; the plain zoo model stays ordered. The subset is reduced to keep the tests short; the attacks,
the guard and admission are the lite protocol's own."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import medbench
from medbench import checks
from medbench.errors import InvalidModelError
from medbench.evaluate import EvalContext, benchmark, prepare_model
from medbench.protocol import load_protocol
from medbench.site.lite import GUARDS, load_lite, not_ordered_because
from conftest import REPO, need_real

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
LITE = load_protocol("lite2")
SMALL = LITE.derive(**{"adversarial.subset_size": 64, "clean.bootstrap_resamples": 200})
HEADLINE = "Linf-2/255"


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def erm(real_root):
    need_real(real_root, "breastmnist.npz")
    return medbench.load_model("Baseline_ResNet8_ERM", dataset="breastmnist")


def off_grid(x: torch.Tensor) -> torch.Tensor:
    """Per example: True when some pixel is not a multiple of 1/255 (the attacks' inputs, not the test images)."""
    return ((x * 255 - torch.round(x * 255)).abs() > 1e-4).flatten(1).any(1)


class Wrapped(nn.Module):
    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base

    def snapped(self, x: torch.Tensor, leak: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` where it is on the uint8 grid, else rounded to it (plus ``leak``, zero-valued)."""
        rounded = torch.round(x * 255).detach() / 255
        if leak is not None:
            rounded = rounded + leak
        return torch.where(off_grid(x).view(-1, *[1] * (x.ndim - 1)), rounded, x)


class AttackDetector(Wrapped):
    """The base model's answers on every real image; zero gradient wherever an attack searches."""

    def forward(self, x):
        return self.base(self.snapped(x))


class RoundedWithLeak(Wrapped):
    """The detector with a tiny gradient leak through the input: round(x) + 1e-3 (x - x.detach())."""

    def forward(self, x):
        return self.base(self.snapped(x, 1e-3 * (x - x.detach())))


class RoundedWithMisleadingLeak(Wrapped):
    """The detector with a tiny leak that points nowhere useful: 1e-3 times a fixed random pattern of the
    input, added to the class-1 logit (zero-valued; its gradient is all an attack sees off the grid)."""

    def __init__(self, base: nn.Module):
        super().__init__(base)
        self.register_buffer("pattern", torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        z = self.base(self.snapped(x))
        leak = 1e-3 * ((x - x.detach()) * self.pattern).flatten(1).sum(1, keepdim=True)
        return z + leak * torch.tensor([0.0, 1.0])


class Wiggle(Wrapped):
    """No rounding: the class-1 logit gains 1e-3 sum(sin(1e5 x)), a few hundredths at most, whose gradient
    (up to 100 per pixel) drowns the model's own everywhere, on the grid too, so FGSM is misled as well."""

    def forward(self, x):
        wiggle = 1e-3 * torch.sin(1e5 * x).flatten(1).sum(1, keepdim=True)
        return self.base(x) + wiggle * torch.tensor([0.0, 1.0])


class NaNOffGrid(Wrapped):
    def forward(self, x):
        out = self.base(x)
        return torch.where(off_grid(x)[:, None], torch.full_like(out, float("nan")), out)


def lite(model, root, out=None, **kw):
    return benchmark(model, "breastmnist", threats="all", protocol=SMALL, data_root=root, progress=False, out=out, **kw)


def failed(result) -> dict[str, str]:
    return {c.name: c.message for c in result.checks if not c.passed}


@pytest.fixture(scope="module")
def base(erm, real_root):
    return lite(erm, real_root, model_id="Baseline_ResNet8_ERM")


def test_the_zoo_model_is_guarded_and_ordered(base):
    assert base.admitted and base.reliable and not_ordered_because(base) == []
    guards = {c.name: c.passed for c in base.checks if c.name in GUARDS}
    assert guards == {"whitebox_beats_square": True, "whitebox_beats_fgsm": True}
    assert base.adversarial[HEADLINE].config.attacks == ["apgd-ce", "square"]


def test_an_attack_detector_is_listed_apart_with_the_guards_message(erm, base, real_root, tmp_path):
    """lite1 (APGD-CE alone) put it at the head of the list; the guard (Square and FGSM, which reach the grid
    points the detector answers honestly) makes it unreliable, and the page lists it apart with the reason."""
    det = lite(AttackDetector(erm), real_root, model_id="Detector",
               out=tmp_path / "lite" / "breastmnist" / "Detector.json")
    base.to_json(tmp_path / "lite" / "breastmnist" / "Baseline_ResNet8_ERM.json")
    assert det.admitted and not det.reliable  # same answers on every real image: admission cannot tell
    detected, honest = (r.adversarial[HEADLINE].robust_balanced_accuracy for r in (det, base))
    assert detected > honest + 0.3  # what it would have claimed
    msgs = failed(det)
    assert "masked" in msgs["whitebox_beats_square"] and "single gradient step" in msgs["whitebox_beats_fgsm"]
    page = load_lite(tmp_path / "lite", SMALL)
    board = page.boards["breastmnist"]
    assert page.problems == [] and [r.model_id for r in board.ordered] == ["Baseline_ResNet8_ERM"]
    (row,) = board.apart
    assert row.model_id == "Detector" and row.why[0].label == "evaluation unreliable"
    assert str(row.why[0]).startswith("evaluation unreliable: whitebox_beats_square: points that Square broke")
    html = render_lite(page)
    apart = html.split("Not ordered (1)")[1]
    assert "Detector" in apart and "whitebox_beats_square: points that Square broke" in apart
    assert "Detector" not in html.split("Not ordered (1)")[0].split("<tbody>")[1]


@pytest.mark.parametrize("wrapper", [RoundedWithLeak, RoundedWithMisleadingLeak])
def test_a_rounded_model_with_a_gradient_leak_gains_nothing(erm, base, real_root, wrapper):
    """Either the white-box attack follows the leak (its number is the base model's) or the guard catches
    it: a masking model is never ordered above what it is."""
    r = lite(wrapper(erm), real_root)
    assert r.admitted
    robust = r.adversarial[HEADLINE].robust_balanced_accuracy
    assert not_ordered_because(r) or robust <= base.adversarial[HEADLINE].robust_balanced_accuracy + 0.02
    if wrapper is RoundedWithMisleadingLeak:  # its leak leads APGD nowhere: only the guard can tell
        assert not r.reliable and {"whitebox_beats_square", "whitebox_beats_fgsm"} & set(failed(r))


def test_a_gradient_that_misleads_everywhere_is_caught_by_square(erm, base, real_root):
    """The guard that needs no gradient: FGSM follows the same wiggle APGD follows, Square does not."""
    r = lite(Wiggle(erm), real_root)
    assert r.admitted and not r.reliable
    assert "whitebox_beats_square" in failed(r) and "whitebox_beats_fgsm" not in failed(r)
    assert r.adversarial[HEADLINE].broken_by.count("square") > 0


def test_nan_off_the_grid_is_refused_with_its_cause(erm, real_root, tmp_path):
    with pytest.raises(InvalidModelError) as info:
        lite(NaNOffGrid(erm), real_root)
    assert "finite_off_grid: subset images whose logits are non-finite" in str(info.value)
    assert "Fix: return finite logits" in str(info.value)
    r = lite(NaNOffGrid(erm), real_root, allow_unranked=True, model_id="NaN",
             out=tmp_path / "lite" / "breastmnist" / "NaN.json")
    assert not r.admitted and r.adversarial == {}
    (row,) = load_lite(tmp_path / "lite", SMALL).boards["breastmnist"].apart
    assert row.why[0].label == "not admitted" and row.why[0].detail.startswith("finite_off_grid:")


def test_nan_under_attack_fails_the_lite_result(erm, real_root):
    """Past admission (a model that turns NaN only where the attacks go), the lite attacks and the FGSM guard
    count non-finite logits, and finite_under_attack fails."""
    spec = medbench.get_spec("breastmnist")
    split = medbench.load_dataset("breastmnist", "test", root=real_root)
    net = prepare_model(NaNOffGrid(erm), spec, 28, torch.device("cpu"))
    ctx = EvalContext(model=net, spec=spec, split=split, size=28, device=torch.device("cpu"), batch_size=64,
                      seed=0, protocol=SMALL, data_root=real_root, progress=False)
    from medbench.attacks.evaluation import run_curves, run_linf

    fields = {**run_linf(ctx), **run_curves(ctx)}
    assert fields["adversarial"][HEADLINE].nonfinite_outputs > 0
    verdict = checks.finite_under_attack(ctx, fields)
    assert not verdict.passed and "NaN logits count as class 0" in verdict.message


def render_lite(page) -> str:
    from medbench import __version__
    from medbench.protocol import CURRENT_VERSION
    from medbench.site import protocol_page
    from medbench.site.render import environment

    env = environment()
    return env.get_template("lite.html").render(root="", lite=page, version=__version__, build_date=None,
                                                protocols=protocol_page.versions(), current_protocol=CURRENT_VERSION)
