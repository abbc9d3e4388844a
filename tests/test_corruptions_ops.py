"""Corruption operations: shapes, reference calls (Pillow), severity order, determinism, identity."""

from __future__ import annotations

import io
import json
import string

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageEnhance

import medbench
from medbench.corruptions import corrupt, corruption_parameters
from medbench.corruptions.common import image_rngs
from medbench.corruptions.ops2d import OPS_2D
from medbench.corruptions.registry import CORRUPTION_OPS_2D, IDENTITY_2D, IDENTITY_3D, PUBLISHED_224, RANDOM_3D
from medbench.protocol import CURRENT_VERSION, load_protocol

from conftest import need_real

PROTO = load_protocol()


def _images(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth synthetic images with texture (a gradient plus noise), uint8 N x C x H x W."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size)
    base = (ramp[None, :] * ramp[:, None])[None, None]
    x = 0.6 * base + 0.4 * torch.rand((n, channels, size, size), generator=g)
    return (x * 255).round().to(torch.uint8)


def _pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(a[0]) if a.shape[0] == 1 else Image.fromarray(a.transpose(1, 2, 0))


def _np(img: Image.Image) -> np.ndarray:
    a = np.asarray(img)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


@pytest.mark.parametrize("dataset", sorted(PUBLISHED_224))
def test_every_corruption_keeps_shape_dtype_range(dataset):
    spec = medbench.get_spec(dataset)
    for size in (28, 64):
        x = _images(3, spec.n_channels, size)
        for name, plist in corruption_parameters(spec, size, PROTO).items():
            assert len(plist) == 5, (dataset, name)
            for sev in (1, 5):
                y = corrupt(x, spec, name, sev, plist[sev - 1])
                assert y.shape == x.shape and y.dtype == torch.uint8, (dataset, name, size)


def test_published_224_parameters_run_at_224():
    x = _images(2, 3, 224)
    spec = medbench.get_spec("dermamnist")
    for name, plist in corruption_parameters(spec, 224, PROTO).items():
        assert plist == PUBLISHED_224["dermamnist"][name]
        y = corrupt(x, spec, name, 5, plist[4])
        assert y.shape == x.shape and not torch.equal(y, x), name


def test_published_224_is_package_data_checked_at_import():
    """The table ships as ``corruptions/published_224.json``; a broken copy is refused with its place."""
    from importlib import resources

    from medbench.corruptions.registry import load_published_224

    text = resources.files("medbench.corruptions").joinpath("published_224.json").read_text()
    assert load_published_224(text) == PUBLISHED_224
    assert PUBLISHED_224["pathmnist"]["bubble"][0] == {"max_radius": 7, "max_bubbles": 15}
    broken = json.loads(text)
    del broken["parameters"]["bloodmnist"]["pixelate"][-1]
    with pytest.raises(ValueError, match="bloodmnist.pixelate .*five severities"):
        load_published_224(json.dumps(broken))
    broken = json.loads(text)
    broken["parameters"]["organamnist"] = dict(reversed(broken["parameters"]["organamnist"].items()))
    with pytest.raises(ValueError, match="organamnist must list the 13 greyscale corruptions"):
        load_published_224(json.dumps(broken))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [28, 64, 224])
def test_pixelate_matches_pillow_box_resize(channels, size):
    x = _images(4, channels, size, seed=size)
    for factor in (0.8, 0.5, 0.37, 0.25, 0.1):
        y = OPS_2D["pixelate"](x, {"factor": factor}, [])
        s = int(size * factor)
        for i in range(len(x)):
            ref = _pil(x[i].numpy()).resize((s, s), Image.BOX).resize((size, size), Image.BOX)
            np.testing.assert_array_equal(y[i].numpy(), _np(ref), err_msg=f"factor {factor}")


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_matches_pillow(channels):
    x = _images(4, channels, 28)
    for q in (50, 15, 7):
        y = OPS_2D["jpeg"](x, {"quality": q}, [])
        for i in range(len(x)):
            buf = io.BytesIO()
            _pil(x[i].numpy()).save(buf, "JPEG", quality=q)
            np.testing.assert_array_equal(y[i].numpy(), _np(Image.open(buf)))


@pytest.mark.parametrize("channels", [1, 3])
def test_brightness_and_contrast_match_pil_imageenhance(channels):
    x = _images(6, channels, 28, seed=3)
    for factor in (0.3, 0.55, 0.8, 1.0, 1.15, 1.4, 2.0):
        yb = OPS_2D["brightness"](x, {"factor": factor}, [])
        yc = OPS_2D["contrast"](x, {"factor": factor}, [])
        for i in range(len(x)):
            img = _pil(x[i].numpy())
            np.testing.assert_array_equal(yb[i].numpy(), _np(ImageEnhance.Brightness(img).enhance(factor)))
            np.testing.assert_array_equal(yc[i].numpy(), _np(ImageEnhance.Contrast(img).enhance(factor)))


def _skimage_saturate(x: torch.Tensor, shift: float) -> torch.Tensor:
    """MedMNIST-C's Saturate: scikit-image HSV, saturation + shift, back to RGB, truncated to uint8."""
    from skimage.color import hsv2rgb, rgb2hsv

    out = []
    for a in x.permute(0, 2, 3, 1).numpy():
        hsv = rgb2hsv(a / 255.0)
        hsv[..., 1] = np.clip(hsv[..., 1] + shift, 0, 1)
        out.append((np.clip(hsv2rgb(hsv), 0, 1) * 255).astype(np.uint8))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


def test_saturate_matches_scikit_image():
    x = _images(4, 3, 32, seed=7)
    x[:, 2] = x[:, 0]  # ties between channels take scikit-image's formula order
    for shift in (0.05, 0.17, 0.25):
        assert torch.equal(OPS_2D["saturate"](x, {"shift": shift}, []), _skimage_saturate(x, shift)), shift


def test_identity_parameters_are_the_identity():
    for channels in (1, 3):
        x = _images(3, channels, 28)
        for name, p in IDENTITY_2D.items():
            if name == "saturate" and channels == 1:
                continue
            y = OPS_2D[CORRUPTION_OPS_2D[name]](x, p, image_rngs(0, "dermamnist", name, 1, range(3)))
            if name == "saturate":  # the reference's HSV round trip, truncated, moves some values one level down
                assert torch.equal(y, _skimage_saturate(x, 0.0)) and (x.int() - y.int()).max() == 1, name
            else:
                assert torch.equal(y, x), name
    spec3 = medbench.get_spec("adrenalmnist3d")
    v = torch.randint(0, 256, (2, 1, 12, 12, 12), dtype=torch.uint8)
    for name, p in IDENTITY_3D.items():
        assert torch.equal(corrupt(v, spec3, name, 1, p), v), name


@pytest.mark.parametrize("dataset", ["retinamnist", "pneumoniamnist", "pathmnist", "dermamnist", "adrenalmnist3d",
                                     "organmnist3d"])
def test_determinism_across_batch_sizes_and_order(dataset):
    spec = medbench.get_spec(dataset)
    if spec.is_3d:
        x = torch.randint(0, 256, (7, 1, 28, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    else:
        x = _images(7, spec.n_channels, 28, seed=5)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(1))
    for name, plist in corruption_parameters(spec, 28, PROTO).items():
        p = plist[3]
        full = corrupt(x, spec, name, 4, p, seed=0)
        assert torch.equal(full, corrupt(x, spec, name, 4, p, seed=0, batch_size=2)), name
        assert torch.equal(full[perm], corrupt(x[perm], spec, name, 4, p, seed=0, indices=perm.tolist())), name
        if name not in ("pixelate", "jpeg_compression"):  # deterministic ops have no seed to vary
            other = corrupt(x, spec, name, 4, p, seed=1)
            random_op = (name in RANDOM_3D if spec.is_3d else
                         any(k in name for k in ("noise", "motion", "bubble", "stain", "characters")))
            assert torch.equal(other, full) != random_op, name


def _distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).pow(2).mean().sqrt())


@pytest.mark.realdata
@pytest.mark.parametrize("dataset", ["breastmnist", "retinamnist"])
def test_severity_increases_distance_on_real_images(real_root, dataset):
    need_real(real_root, f"{dataset}.npz")
    spec = medbench.get_spec(dataset)
    x = medbench.load_dataset(dataset, "test", 28, real_root).images[:64]
    for name, plist in corruption_parameters(spec, 28, PROTO).items():
        d = [_distance(corrupt(x, spec, name, s, p), x) for s, p in enumerate(plist, 1)]
        assert all(b >= a - 1e-9 for a, b in zip(d, d[1:])), (name, d)
        assert d[-1] > d[0] > 0, (name, d)


def test_bad_input_is_rejected_with_a_clear_message():
    spec = medbench.get_spec("breastmnist")
    with pytest.raises(TypeError, match="uint8"):
        corrupt(torch.rand(2, 1, 28, 28), spec, "pixelate", 1, {"factor": 0.5})
    with pytest.raises(ValueError, match="N x C x H x W"):
        corrupt(torch.zeros(2, 28, 28, dtype=torch.uint8), spec, "pixelate", 1, {"factor": 0.5})
    with pytest.raises(ValueError, match="not a corruption"):
        corruption_parameters(spec, 28, PROTO.derive(**{"corruptions.parameters": {"blurry": [{}] * 5}}))
    with pytest.raises(ValueError, match="not in the breastmnist suite"):
        corruption_parameters(spec, 28, PROTO.derive(**{"corruptions.include": ["saturate"]}))


def test_protocol_parameter_file_is_complete_and_justified():
    from medbench.corruptions.params import parameter_document

    doc = parameter_document(CURRENT_VERSION)
    assert set(doc["medmnist-c"]) == set(PUBLISHED_224)
    for ds, table in PUBLISHED_224.items():
        for name, published in table.items():
            entry = doc["medmnist-c"][ds][name]
            assert entry["224"]["params"] == published, (ds, name)
            for size in ("28", "64", "128"):
                e = entry[size]
                assert len(e["params"]) == len(e["target_rmse"]) == len(e["achieved_rmse"]) == 5, (ds, name, size)
                assert e["measured_on"] in ("breastmnist", "pneumoniamnist", "retinamnist"), (ds, name)
                if e["source"] == "calibrated" and e["params"] != published:
                    # successive severities are distinct parameters
                    assert all(a != b for a, b in zip(e["params"], e["params"][1:])), (ds, name, size)
    assert set(doc["medbench-3d"]["parameters"]) == {"28", "64"}


@pytest.mark.parametrize("px", [5.85, 6.55, 2.925, 3.275])  # the sizes characters draws at 224 px and at 28 px
def test_characters_cached_letters_compose_words_as_pillow_draws_them(px):
    """characters composes words from cached letter renders; they must be Pillow's own rendering of the word."""
    from medbench.corruptions.ops2d import _font, render_word

    rng = np.random.default_rng(0)
    for _ in range(60):
        word = "".join(rng.choice(list(string.ascii_lowercase), int(rng.integers(3, 13))))
        x, y = float(rng.integers(20, 80)) / 2, float(rng.integers(30, 60)) / 2  # whole and half pixels
        canvas = Image.new("L", (128, 64), 0)
        ImageDraw.Draw(canvas).text((x, y), word, fill=255, font=_font(px), anchor="ls")
        expected = np.asarray(canvas)
        tile, top, left = render_word(word, x, y, px)
        got = np.zeros_like(expected)
        got[top:top + tile.shape[0], left:left + tile.shape[1]] = tile
        assert np.array_equal(got, expected), (word, x, y, px)
