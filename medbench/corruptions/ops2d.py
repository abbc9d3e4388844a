"""The MedMNIST-C corruption operations, batched, for grey and RGB images at any size.

Each operation takes a uint8 batch ``N x C x H x W``, a parameter dict (one severity) and one
random generator per image, and returns a uint8 batch of the same shape. The definitions follow
the published MedMNIST-C code (Di Salvo et al. 2024); where it calls a library, medbench
reproduces that call (pixelate = Pillow BOX resize, brightness/contrast = PIL ImageEnhance, both
pixel for pixel; jpeg = Pillow itself; gamma = torchvision's PIL lookup table; motion blur =
ImageMagick's one-sided Gaussian streak; defocus = cv2 disk kernel; stain_deposit = its own ink
masks, vendored in :mod:`.inks`), and it truncates float results to uint8 where the original does.
Grey images get the original's treatment: MedMNIST-C corrupts them as RGB and converts back with
Pillow's luminance, which only matters for the per-channel noises. bench/medmnistc_fidelity.py
compares every 224-px cell with the original package. Deliberate differences: characters draws
Pillow text sized to match the original's thin Hershey lettering (cv2 is not a dependency); and the
shape-based corruptions (bubble, stain_deposit, black_corner, characters) are drawn in 224-px
geometry and area-resized, so they cover the same fraction of the image at every size.
"""

from __future__ import annotations

import io
import math
import string
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from .inks import inks
from .common import area_matrix, area_resize, pil_luminance, quantize, to_unit, truncate

Op = Callable[[torch.Tensor, dict, list], torch.Tensor]
OPS_2D: dict[str, Op] = {}

CANVAS = 224  # the size the published parameters and the drawn corruptions' geometry refer to


def op(name: str):
    def deco(fn: Op) -> Op:
        OPS_2D[name] = fn
        return fn
    return deco


def _to_pil(img_chw: np.ndarray) -> Image.Image:
    return Image.fromarray(img_chw[0]) if img_chw.shape[0] == 1 else Image.fromarray(img_chw.transpose(1, 2, 0))


def _from_pil(img: Image.Image) -> np.ndarray:
    a = np.asarray(img)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _pad(x: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    if pad == 0:
        return x
    if mode == "reflect" and pad >= min(x.shape[-2:]):
        mode = "replicate"  # reflection needs the image to be larger than the pad
    return F.pad(x, (pad, pad, pad, pad), mode=mode)


def _correlate(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Same-size 2D correlation of every channel of float64 ``x`` with one odd-sized ``kernel``.

    Small kernels use a direct convolution; large ones an FFT of the padded image (the padded
    size is enough: the outputs kept never wrap around).
    """
    n, c, h, w = x.shape
    k = kernel.shape[-1]
    xp = _pad(x.reshape(n * c, 1, h, w), k // 2, mode)
    kernel = kernel.to(x.dtype)
    if k <= 7:  # a weighted sum of shifted views: faster than float64 convolution for small kernels
        xp = xp[:, 0]
        out = torch.zeros((n * c, h, w), dtype=x.dtype)
        for i in range(k):
            for j in range(k):
                if kernel[i, j] != 0:
                    out += float(kernel[i, j]) * xp[:, i:i + h, j:j + w]
        return out.reshape(n, c, h, w)
    size = tuple(xp.shape[-2:])
    spec = torch.fft.rfft2(xp[:, 0]) * torch.fft.rfft2(torch.flip(kernel, (0, 1)), s=size)
    y = torch.fft.irfft2(spec, s=size)[:, k - 1:k - 1 + h, k - 1:k - 1 + w]
    return y.reshape(n, c, h, w)


# ---------------------------------------------------------------- digital


@op("pixelate")
def pixelate(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Down- then up-scale by ``factor`` with Pillow's BOX filter (image by image: Pillow is the definition
    and its fixed-point resampler beats a batched float64 re-implementation at every size)."""
    h, w = x.shape[-2:]
    sh, sw = int(h * p["factor"]), int(w * p["factor"])
    if (sh, sw) == (h, w):
        return x.clone()
    if min(sh, sw) < 1:
        raise ValueError(f"pixelate factor {p['factor']} leaves no pixel of a {h}x{w} image; use a factor >= {1 / min(h, w):.3f}.")
    arr = x.numpy()
    out = np.empty(arr.shape, dtype=np.uint8)
    for i in range(arr.shape[0]):
        out[i] = _from_pil(_to_pil(arr[i]).resize((sw, sh), Image.BOX).resize((w, h), Image.BOX))
    return torch.from_numpy(out)


@op("jpeg")
def jpeg(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Save and reload as JPEG with Pillow at ``quality`` (image by image: the codec is the definition)."""
    q = int(p["quality"])
    out = np.empty(tuple(x.shape), dtype=np.uint8)
    arr = x.numpy()
    for i in range(arr.shape[0]):
        buf = io.BytesIO()
        _to_pil(arr[i]).save(buf, "JPEG", quality=q)
        buf.seek(0)
        out[i] = _from_pil(Image.open(buf))
    return torch.from_numpy(out)


# ---------------------------------------------------------------- noise


def _per_channel(x: torch.Tensor, noise: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply ``noise`` (float [0, 1] in, float out) the way MedMNIST-C does, truncating to uint8.

    MedMNIST-C corrupts every image as RGB: a grey image becomes three equal channels, each gets
    its own noise, and the result goes back to grey with Pillow's ``convert('L')``. Averaging
    three independent noises weakens them (about 3.5 dB for Gaussian noise), so grey images are
    treated the same way here.
    """
    grey = x.shape[1] == 1
    y = truncate(noise(to_unit(x.expand(-1, 3, -1, -1) if grey else x)))
    return pil_luminance(y) if grey else y


def _normal(v: torch.Tensor, rngs: list) -> torch.Tensor:
    shape = tuple(v.shape[1:])
    return torch.from_numpy(np.stack([g.standard_normal(shape) for g in rngs]))


@op("gaussian_noise")
def gaussian_noise(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Additive Gaussian noise, ``sigma`` in [0, 1] intensity units, per RGB channel."""
    return _per_channel(x, lambda v: v + p["sigma"] * _normal(v, rngs))


@op("speckle_noise")
def speckle_noise(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Multiplicative Gaussian noise: x + x * N(0, sigma), per RGB channel."""
    return _per_channel(x, lambda v: v + v * (p["sigma"] * _normal(v, rngs)))


@op("impulse_noise")
def impulse_noise(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Salt and pepper (scikit-image ``s&p``): each value flips with prob. ``amount``, to 0 or 1 equally.

    With ``subpixels`` n > 1 (the protocol's low-resolution sizes) each pixel stands for n pixels of
    the 224-px image: they flip independently and the pixel takes their mean, as if the 224-px
    noise had been area-resized (see :func:`impulse_subpixels`)."""
    def noise(v: torch.Tensor) -> torch.Tensor:
        if int(p.get("subpixels", 1)) > 1:
            return impulse_subpixels(v, float(p["amount"]), int(p["subpixels"]), rngs)
        shape = tuple(v.shape[1:])
        draws = [(g.random(shape), g.random(shape)) for g in rngs]  # flipped, then salted, as scikit-image draws
        flip = torch.from_numpy(np.stack([d[0] for d in draws])) <= p["amount"]
        salt = torch.from_numpy(np.stack([d[1] for d in draws])) <= 0.5
        return torch.where(flip & salt, 1.0, torch.where(flip & ~salt, 0.0, v))
    return _per_channel(x, noise)


def impulse_subpixels(v: torch.Tensor, amount: float, n: int, rngs: list) -> torch.Tensor:
    """Salt and pepper on float [0, 1] values ``v``, averaged over ``n`` virtual sub-pixels per value.

    At 28 px a pixel covers 64 pixels of the 224-px image the published amounts refer to: there,
    impulse noise at a matching strength would flip well under one pixel per image (most images
    unchanged, severities out of order); here it shifts many pixels by small amounts instead.
    """
    shape = tuple(v.shape[1:])
    flips = np.stack([g.binomial(n, amount, shape) for g in rngs])
    salt = np.stack([g.binomial(k, 0.5) for g, k in zip(rngs, flips)])
    k, s = torch.from_numpy(flips).double(), torch.from_numpy(salt).double()
    return (v * (n - k) + s) / n


@op("shot_noise")
def shot_noise(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Poisson noise: Poisson(x * photons) / photons (fewer photons is worse), per RGB channel."""
    def noise(v: torch.Tensor) -> torch.Tensor:
        lam = (v * p["photons"]).numpy()
        return torch.from_numpy(np.stack([g.poisson(lam[i]) for i, g in enumerate(rngs)]) / p["photons"])
    return _per_channel(x, noise)


# ---------------------------------------------------------------- blur


@lru_cache(maxsize=256)
def defocus_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """MedMNIST-C's (ImageNet-C's) aliased disk, smoothed by a 3x3 (5x5 above radius 8) Gaussian, cropped.

    In float32 like the original (``np.float32`` disk, ``cv2.GaussianBlur``): the kernel's exact
    sum decides whether a flat region keeps its level or truncates one below it.
    """
    half = 8 if radius <= 8 else int(math.ceil(radius))
    ksize = 3 if radius <= 8 else 5
    ax = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(ax, ax)
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float32)
    disk /= np.sum(disk)
    # cv2.GaussianBlur(disk, (ksize, ksize), sigmaX=alias_blur): a float32 separable filter with its
    # default BORDER_REFLECT_101; the 1D kernel is computed in float64 and stored as float32
    if alias_blur > 0:
        g = np.exp(-((np.arange(ksize) - ksize // 2) ** 2) / (2 * alias_blur ** 2))
        g = (g / g.sum()).astype(np.float32)
        t = torch.from_numpy(disk)[None, None]
        t = F.pad(t, (ksize // 2,) * 4, mode="reflect")
        t = F.conv2d(t, torch.from_numpy(g).view(1, 1, 1, -1))
        t = F.conv2d(t, torch.from_numpy(g).view(1, 1, -1, 1))
        disk = t[0, 0].numpy()
    disk = disk.astype(np.float64)
    # crop to the non-zero support (zero weights add nothing), keeping the kernel centred and odd
    nz = np.argwhere(disk > 1e-12)
    r = int(np.abs(nz - half).max()) if len(nz) else 0
    return torch.from_numpy(np.ascontiguousarray(disk[half - r:half + r + 1, half - r:half + r + 1]))


@op("defocus_blur")
def defocus_blur(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Correlation with an aliased disk of ``radius`` smoothed by ``alias_blur`` (cv2 reflect-101 border)."""
    return truncate(_correlate(to_unit(x), defocus_kernel(float(p["radius"]), float(p["alias_blur"])), "reflect"))


def motion_taps(radius: float, sigma: float) -> np.ndarray:
    """ImageMagick's MotionBlurImage weights: a one-sided Gaussian over 2*ceil(radius)+1 taps."""
    width = int(2 * math.ceil(radius) + 1) if radius > 1e-12 else 1
    i = np.arange(width, dtype=np.float64)
    k = np.exp(-(i ** 2) / (2 * sigma ** 2)) if sigma > 0 else (i == 0).astype(np.float64)
    return k / k.sum()


@op("motion_blur")
def motion_blur(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Streak along a random angle in [-45, 45] degrees (per image), ImageMagick's motion blur."""
    k = motion_taps(float(p["radius"]), float(p["sigma"]))
    angles = np.deg2rad(np.array([g.uniform(-45, 45) for g in rngs]))
    n, c, h, w = x.shape
    if len(k) == 1 or n == 0:
        return x.clone()
    pad = len(k)
    v = F.pad(to_unit(x), (pad, pad, pad, pad), mode="replicate")  # ImageMagick's default edge pixels
    out = torch.zeros((n, c, h, w), dtype=torch.float64)
    taps = np.arange(len(k))[:, None]
    ox = np.ceil(taps * np.cos(angles)[None] - 0.5).astype(int)  # taps x images, as MotionBlurImage rounds
    oy = np.ceil(taps * np.sin(angles)[None] - 0.5).astype(int)
    groups: dict[tuple, list[int]] = {}  # images whose angles round to the same offsets share one pass
    for j in range(n):
        groups.setdefault(tuple(ox[:, j]) + tuple(oy[:, j]), []).append(j)
    for members in groups.values():
        idx = torch.tensor(members)
        sub = v[idx]
        acc = torch.zeros((len(members), c, h, w), dtype=torch.float64)
        j = members[0]
        for i, wt in enumerate(k):
            y0, x0 = pad + oy[i, j], pad + ox[i, j]
            acc += float(wt) * sub[:, :, y0:y0 + h, x0:x0 + w]
        out[idx] = acc
    return truncate(out)  # the reference's ImageMagick -> PNG -> uint8 round trip truncates (measured)


@op("zoom_blur")
def zoom_blur(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Average of the image and its centre zoomed by 1, 1+step, ... < stop (scipy order-1 zoom).

    In float32 like the original (each zoom interpolated in float64 and stored as float32, summed in
    float32), then truncated.
    """
    zooms = np.arange(1.0, p["stop"], p["step"])
    v = to_unit(x).float()
    h = v.shape[-1]
    acc = torch.zeros_like(v)
    for z in zooms:
        ch = int(np.ceil(h / z))
        top = (h - ch) // 2
        crop = v[..., top:top + ch, top:top + ch].double()
        size = int(round(ch * z))
        zoomed = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=True) if size != ch else crop
        trim = (size - h) // 2
        acc += zoomed[..., trim:trim + h, trim:trim + h].float()
    out = ((v + acc) / (len(zooms) + 1)).clamp(0, 1) * 255
    return out.to(torch.uint8)


def gaussian_blur_params(p: dict) -> tuple[float, int]:
    """(sigma, radius): from torchvision's ``kernel_size`` convention (published) or given directly."""
    if "kernel_size" in p:
        k = int(p["kernel_size"])
        return 0.3 * ((k - 1) * 0.5 - 1) + 0.8, k // 2
    return float(p["sigma"]), int(p.get("radius", max(1, math.ceil(2.2 * float(p["sigma"])))))


@op("gaussian_blur")
def gaussian_blur(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """torchvision's ``gaussian_blur`` on a uint8 image: float32 2D kernel, reflect border, rounded."""
    sigma, radius = gaussian_blur_params(p)
    if radius == 0 or sigma <= 0 or len(x) == 0:
        return x.clone()
    # torchvision's _get_gaussian_kernel1d / 2d, in float32 (the reference's arithmetic)
    t = torch.linspace(-float(radius), float(radius), steps=2 * radius + 1)
    pdf = torch.exp(-0.5 * (t / sigma).pow(2))
    k1 = pdf / pdf.sum()
    k2 = torch.mm(k1[:, None], k1[None, :])
    c, h, w = x.shape[1:]
    v = _pad(x.float(), radius, "reflect")
    if h >= 128:
        # image by image, as the reference calls it (pixel-exact with it): a float32 convolution's
        # summation order may depend on the batch shape, and an output must not depend on its batch
        weight = k2.expand(c, 1, *k2.shape)
        out = torch.cat([F.conv2d(v[i:i + 1], weight, groups=c) for i in range(len(x))])
    else:
        # small images: a fixed-order float32 sum of shifted views (batch-independent, and fast for
        # thousands of images; differs from the convolution only on rare rounding ties)
        out = torch.zeros((len(x), c, h, w), dtype=torch.float32)
        for i in range(2 * radius + 1):
            for j in range(2 * radius + 1):
                out += k2[i, j] * v[..., i:i + h, j:j + w]
    return torch.round(out).clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------- colour / intensity


def _pil_blend(degenerate: torch.Tensor, x: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL's ``Image.blend(degenerate, image, factor)`` in float32, truncated as Pillow does."""
    a = torch.tensor(factor, dtype=torch.float32)
    d = degenerate.to(torch.int32)
    t = d.float() + a * (x.to(torch.int32) - d).float()
    if 0 <= float(a) <= 1:
        return t.to(torch.uint8)
    return t.clamp(0, 255).to(torch.uint8)


@op("brightness")
def brightness(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """PIL ``ImageEnhance.Brightness(img).enhance(factor)``, pixel for pixel."""
    return _pil_blend(torch.zeros((), dtype=torch.uint8), x, float(p["factor"]))


def pil_grey_mean(x: torch.Tensor) -> torch.Tensor:
    """Per-image rounded mean of Pillow's ``convert('L')`` (ITU-R 601-2 in 16-bit fixed point)."""
    if x.shape[1] == 3:
        v = x.to(torch.int64)
        grey = (v[:, 0] * 19595 + v[:, 1] * 38470 + v[:, 2] * 7471 + 0x8000) >> 16
    else:
        grey = x[:, 0].to(torch.int64)
    mean = grey.flatten(1).sum(1).double() / grey[0].numel()
    return torch.floor(mean + 0.5).to(torch.int64)


@op("contrast")
def contrast(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """PIL ``ImageEnhance.Contrast(img).enhance(factor)``, pixel for pixel."""
    mean = pil_grey_mean(x).view(-1, *([1] * (x.ndim - 1)))
    return _pil_blend(mean, x, float(p["factor"]))


@lru_cache(maxsize=64)
def _gamma_lut(gamma: float) -> torch.Tensor:
    # torchvision's adjust_gamma on PIL images: int((255 + 1 - 1e-3) * gain * (v / 255) ** gamma)
    return torch.tensor([int((255 + 1 - 1e-3) * pow(v / 255.0, gamma)) for v in range(256)], dtype=torch.uint8)


@op("gamma")
def gamma(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Gamma correction v -> v ** gamma through torchvision's 8-bit lookup table."""
    return _gamma_lut(float(p["gamma"]))[x.long()]


def _rgb_to_hsv(v: torch.Tensor) -> torch.Tensor:
    r, g, b = v[:, 0], v[:, 1], v[:, 2]
    mx, _ = v.max(1)
    mn, _ = v.min(1)
    delta = mx - mn
    s = torch.where(mx > 0, delta / mx.clamp_min(1e-300), torch.zeros_like(mx))
    safe = delta.clamp_min(1e-300)
    # scikit-image assigns red, then green, then blue: on ties the later channel's formula wins
    h = torch.where(mx == b, 4.0 + (r - g) / safe, torch.where(mx == g, 2.0 + (b - r) / safe, (g - b) / safe))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, mx], 1)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    h, s, v = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    i = i.long() % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros_like(hsv)
    for k, (rr, gg, bb) in enumerate(choices):
        m = i == k
        out[:, 0] = torch.where(m, rr, out[:, 0])
        out[:, 1] = torch.where(m, gg, out[:, 1])
        out[:, 2] = torch.where(m, bb, out[:, 2])
    return out


@op("saturate")
def saturate(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Add ``shift`` to the HSV saturation (scikit-image's rgb2hsv / hsv2rgb). RGB only."""
    if x.shape[1] != 3:
        raise ValueError(f"saturate needs RGB images (3 channels); got {x.shape[1]} channel(s).")
    hsv = _rgb_to_hsv(to_unit(x))
    hsv[:, 1] = (hsv[:, 1] + p["shift"]).clamp(0, 1)
    return truncate(_hsv_to_rgb(hsv))


# ---------------------------------------------------------------- drawn artefacts (224-px geometry)
#
# Shapes are placed in 224-px coordinates (the published parameters' units) and drawn on a canvas
# of min(224, 4 x size) pixels, then area-resized: they cover the same fraction of the image at
# every size, anti-aliased, without paying for a 224-px canvas at 28 px.


def canvas_size(size: int) -> int:
    return min(CANVAS, 4 * size)


def _composite(x: torch.Tensor, alpha: np.ndarray, colour: torch.Tensor | float, multiply: bool = False) -> torch.Tensor:
    """Blend ``colour`` over ``x`` with per-image alpha masks drawn on the canvas, area-resized to the image."""
    a = area_resize(torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float64)), x.shape[-1])[:, None]
    v = to_unit(x)
    if multiply:  # ink absorbs light: v * (1 - alpha)
        return quantize(v * (1 - a))
    return quantize(v * (1 - a) + colour * a)


@op("bubble")
def bubble(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Translucent white bubbles: 7..``max_bubbles`` discs of radius 3..``max_radius`` (224-px units)."""
    cs = canvas_size(x.shape[-1])
    k = cs / CANVAS
    masks = np.zeros((len(rngs), cs, cs))
    max_r, max_b = int(p["max_radius"]), int(p["max_bubbles"])
    border = 2
    for i, g in enumerate(rngs):
        layer = Image.new("L", (cs, cs), 0)
        draw = ImageDraw.Draw(layer)
        count = int(g.integers(min(7, max_b), max_b + 1))
        for _ in range(count):  # drawn in the reference's order: radius, x, y per bubble
            r = int(g.integers(min(3, max_r), max_r + 1))
            cx, cy = int(g.integers(r, CANVAS - r + 1)), int(g.integers(r, CANVAS - r + 1))
            draw.ellipse([k * v for v in (cx - r - border, cy - r - border, cx + r + border, cy + r + border)], fill=130)
            draw.ellipse([k * v for v in (cx - r, cy - r, cx + r, cy + r)], fill=100)
        masks[i] = np.asarray(layer) / 255.0
    return _composite(x, masks, 1.0)


@lru_cache(maxsize=None)
def _ink_keep(side: int) -> tuple[torch.Tensor, ...]:
    """Per ink mask of side ``side``: 1 where the image is kept, 0 under the ink (uint8)."""
    return tuple(torch.from_numpy(1 - m) for m in inks(side))


@op("stain_deposit")
def stain_deposit(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """1..``max_marks`` black ink marks (MedMNIST-C's own binary masks of side ``ink_size``, 224-px units).

    As the original: the number of marks, then per mark the mask (one of ten) and its top-left corner
    in [10, 224 - side - 10]; covered pixels turn black. At 224 px the marks are binary and only their
    pixels are touched; at other sizes they are drawn at 224 px and area-resized to the image.
    """
    max_marks, side = int(p["max_marks"]), int(p.get("ink_size", 24))
    n_inks = len(inks(side))
    marks = []  # per image: (ink, top, left) in 224-px units, in the reference's draw order
    for g in rngs:
        count = int(g.integers(1, max_marks + 1)) if max_marks > 1 else max_marks
        placed = []
        for _ in range(count):
            ink = int(g.integers(0, n_inks))
            c0 = int(g.integers(10, CANVAS - side - 10 + 1))
            r0 = int(g.integers(10, CANVAS - side - 10 + 1))
            placed.append((ink, r0, c0))
        marks.append(placed)
    if x.shape[-1] == CANVAS:
        out = x.clone()
        keep = _ink_keep(side)
        for i, placed in enumerate(marks):
            for ink, r0, c0 in placed:
                out[i, :, r0:r0 + side, c0:c0 + side] *= keep[ink]
        return out
    masks_all = inks(side)
    n, _, h, w = x.shape
    out = torch.empty_like(x)
    for start in range(0, n, 128):  # 224-px masks in chunks: a few MB at a time at any image size
        chunk = marks[start:start + 128]
        masks = np.zeros((len(chunk), CANVAS, CANVAS), dtype=np.uint8)
        for i, placed in enumerate(chunk):
            for ink, r0, c0 in placed:
                np.maximum(masks[i, r0:r0 + side, c0:c0 + side], masks_all[ink],
                           out=masks[i, r0:r0 + side, c0:c0 + side])
        alpha = area_resize(torch.from_numpy(masks).double(), w)[:, None]
        out[start:start + len(chunk)] = quantize(to_unit(x[start:start + len(chunk)]) * (1 - alpha))
    return out


@op("black_corner")
def black_corner(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Black outside a centred disc of ``radius_scale`` times the half-width (dermatoscope vignette)."""
    cs = canvas_size(x.shape[-1])
    k = cs / CANVAS
    c = CANVAS // 2
    ax = (np.arange(cs) + 0.5) / k - 0.5  # canvas pixel centres in 224-px units
    yy, xx = np.meshgrid(ax, ax, indexing="ij")
    outside = ((xx - c) ** 2 + (yy - c) ** 2) > int(c * p["radius_scale"]) ** 2
    return _composite(x, np.repeat(outside[None].astype(np.float64), x.shape[0], 0), 0.0)


@lru_cache(maxsize=32)
def _font(px: float):
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, OSError):  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def font_px(scale: float) -> float:
    """Pillow font size (224-px units) whose text carries the ink of the reference's lettering.

    The reference draws cv2's Hershey duplex font with ``fontScale`` 0.14-0.18, thickness 1,
    anti-aliased: about 2-3 px per letter, 5-6 px tall, and it renders in two steps (0.14-0.16
    and 0.17-0.18 give identical text). Measured over 200 random 8-letter words, the sum of
    squared coverage per letter is 1.78 and 3.15 px; Pillow's default font at 5.85 and 6.55 px
    carries the same (so the same squared error on any background).
    """
    return 5.85 if scale < 0.165 else 6.55


@lru_cache(maxsize=1)
def _screen_table() -> np.ndarray:
    """``table[a, b]``: how FreeType's glyphs combine in Pillow's text bitmap, a + b - a * b / 255 (rounded)."""
    a = np.arange(256, dtype=np.int32)[:, None]
    b = np.arange(256, dtype=np.int32)[None, :]
    t = a * b + 128
    return (a + b - (((t >> 8) + t) >> 8)).astype(np.uint8)


@lru_cache(maxsize=4096)
def _glyph(letter: str, px: float, fx: float, fy: float) -> tuple[np.ndarray, int, int]:
    """Pillow's anti-aliased ``letter`` with its pen at fractional offset (fx, fy) of a pixel, left-baseline
    anchored: (uint8 coverage, its top row and left column relative to the pen's whole pixel)."""
    pad = int(math.ceil(2 * px)) + 4
    tile = Image.new("L", (4 * pad, 4 * pad), 0)
    ImageDraw.Draw(tile).text((pad + fx, 2 * pad + fy), letter, fill=255, font=_font(px), anchor="ls")
    a = np.asarray(tile)
    rows, cols = np.nonzero(a)
    if len(rows) == 0:
        return np.zeros((0, 0), dtype=np.uint8), 0, 0
    top, left = int(rows.min()), int(cols.min())
    return a[top:rows.max() + 1, left:cols.max() + 1].copy(), top - 2 * pad, left - pad


@lru_cache(maxsize=1024)
def _advance(letter: str, px: float) -> float:
    return _font(px).getlength(letter)


def render_word(word: str, x: float, y: float, px: float) -> tuple[np.ndarray, int, int]:
    """``word`` as Pillow's ``ImageDraw.text((x, y), word, fill=255, anchor="ls")`` draws it on a black
    canvas (x, y >= 0), composed from cached letters: (uint8 coverage, top row, left column).

    Pillow's basic layout puts each glyph at the pen advanced by the previous glyphs' (whole-pixel)
    advances, without kerning, and composes the glyphs with a screen blend (a + b - a * b / 255);
    tests/test_corruptions_ops.py checks the equality with Pillow's own rendering.
    """
    placed, pen = [], x
    for letter in word:
        ix, iy = int(pen), int(y)
        g, dr, dc = _glyph(letter, px, pen - ix, y - iy)
        if g.size:
            placed.append((g, iy + dr, ix + dc))
        pen += _advance(letter, px)
    if not placed:
        return np.zeros((0, 0), dtype=np.uint8), 0, 0
    top, left = min(r for _, r, _ in placed), min(c for _, _, c in placed)
    bottom = max(r + g.shape[0] for g, r, _ in placed)
    right = max(c + g.shape[1] for g, _, c in placed)
    tile = np.zeros((bottom - top, right - left), dtype=np.uint8)
    screen = _screen_table()
    for g, r, c in placed:
        t = tile[r - top:r - top + g.shape[0], c - left:c - left + g.shape[1]]
        t[...] = screen[t, g]
    return tile, top, left


def _word_alpha(word: str, x: float, y: float, px: float, cs: int, w: int) -> tuple[np.ndarray, int, int] | None:
    """Coverage in [0, 1] of ``word`` drawn on a ``cs`` canvas and area-resized to ``w``, over its box
    only: (float64 alpha, top row, left column in the image), or None when nothing lands on the canvas."""
    tile, top, left = render_word(word, x, y, px)
    r0, c0 = max(top, 0), max(left, 0)  # clipped to the canvas, as drawing on it clips
    r1, c1 = min(top + tile.shape[0], cs), min(left + tile.shape[1], cs)
    if r1 <= r0 or c1 <= c0:
        return None
    a = tile[r0 - top:r1 - top, c0 - left:c1 - left] / 255.0
    if cs == w:
        return a, r0, c0
    mh, mw = area_matrix(cs, w)[:, r0:r1], area_matrix(cs, w)[:, c0:c1]  # the rows / columns it reaches
    rows, cols = np.nonzero(mh.numpy().any(1))[0], np.nonzero(mw.numpy().any(1))[0]
    o0, o1, p0, p1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return (mh[o0:o1].numpy() @ a @ mw[p0:p1].numpy().T), o0, p0


def _overlap(a: tuple, b: tuple) -> bool:
    (ta, la, ha, wa), (tb, lb, hb, wb) = a, b
    return ta < tb + hb and tb < ta + ha and la < lb + wb and lb < la + wa


@op("characters")
def characters(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """1..``max_words`` random lower-case words of 3..``max_letters`` letters in random colours.

    Random draws in the reference's order (words; per word: letters, font scale, each letter,
    x, y, colour), positions in 224-px units; grey images take the colour's Pillow luminance.
    Words are composed from cached letter renders (:func:`render_word`) and blended over their own
    boxes only (an image whose words overlap, over their joint box, word after word).
    """
    n, c, h, w = x.shape
    cs = canvas_size(w)
    k = cs / CANVAS
    max_words, max_letters = int(p["max_words"]), int(p["max_letters"])
    out = x.clone()
    boxes = []  # (image, top, left, height, width, [(alpha, top, left, colour) in drawing order])
    for i, g in enumerate(rngs):
        words = []
        for _ in range(int(g.integers(1, max_words + 1))):
            letters = int(g.integers(3, max_letters + 1))
            scale = int(g.integers(14, int(p["max_font_scale"] * 100) + 1)) / 100.0
            word = "".join(string.ascii_lowercase[int(g.integers(0, 26))] for _ in range(letters))
            ox = int(g.integers(10, max(11, CANVAS - 8 * letters + 1)))
            oy = int(g.integers(10, CANVAS - 10 + 1))
            rgb = [int(g.integers(0, 256)) for _ in range(3)]
            drawn = _word_alpha(word, ox * k, oy * k, max(2.0, font_px(scale) * k), cs, w)
            if drawn is None:
                continue
            lum = (rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16
            colour = np.array(rgb if c == 3 else [lum], dtype=np.float64) / 255.0
            words.append((*drawn, colour[:, None, None]))
        extents = [(t, l, a.shape[0], a.shape[1]) for a, t, l, _ in words]
        if any(_overlap(a, b) for j, a in enumerate(extents) for b in extents[j + 1:]):
            top, left = min(e[0] for e in extents), min(e[1] for e in extents)
            bottom, right = max(e[0] + e[2] for e in extents), max(e[1] + e[3] for e in extents)
            boxes.append((i, top, left, bottom - top, right - left, words))
        else:
            boxes += [(i, t, l, a.shape[0], a.shape[1], [(a, t, l, col)]) for a, t, l, col in words]
    if not boxes:
        return out
    # every box of the batch converted to float and back in one go; the words blended box by box
    arr = out.numpy()
    sizes = [c * hh * ww for _, _, _, hh, ww, _ in boxes]
    flat = to_unit(torch.from_numpy(np.concatenate(
        [arr[i, :, t:t + hh, l:l + ww].reshape(-1) for i, t, l, hh, ww, _ in boxes]))).numpy()
    starts = np.cumsum([0] + sizes[:-1]).tolist()
    for (i, top, left, hh, ww, members), o, size in zip(boxes, starts, sizes):
        v = flat[o:o + size].reshape(c, hh, ww)
        for alpha, t, l, colour in members:  # later words cover earlier ones
            sub = v[:, t - top:t - top + alpha.shape[0], l - left:l - left + alpha.shape[1]]
            sub[...] = sub * (1 - alpha) + colour * alpha
    q = quantize(torch.from_numpy(flat)).numpy()
    for (i, top, left, hh, ww, _), o, size in zip(boxes, starts, sizes):
        arr[i, :, top:top + hh, left:left + ww] = q[o:o + size].reshape(c, hh, ww)
    return out
