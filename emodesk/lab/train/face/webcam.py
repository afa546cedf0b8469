"""Webcam conditions for training face crops: what a laptop camera does to a face that a Kaggle crop lacks.

Applied on the (N, 1, H, W) tensor in [-1, 1], after :func:`train.augment`'s
geometry: each image independently gets, each with its own probability,

- low resolution (a face 60–100 px wide in a 640×480 frame, resampled up to the
  crop size): down to 40–90 % of the side and back, bilinear;
- defocus blur: a Gaussian of σ 0.3–1.8 px;
- uneven light: gain 0.5–1.4, gamma 0.6–1.7 and a linear side-light gradient
  of up to ±45 % in a random direction;
- sensor noise: Gaussian, σ 1–10 grey levels;
- MJPEG compression: 8×8 DCT blocks quantised with the JPEG luma table at a
  quality drawn in 25–95 (chroma does not matter: the members see grey).

The ranges are wider than those of the FER-2013-webcam test frames
(``emodesk/lab/assets/webcam_fer.py``: gain 0.6–1.3, gamma 0.7–1.4, gradient
±35 %, σ ≤ 1.5, noise 2–8, quality 40–90) and drawn from the trainer's own
generator, so the test frames are never the training ones. Colour-to-grey needs
no simulation: every member reads the ITU-R 601 luma of the frame, the same as
FER-2013's grey.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

P_LOWRES, P_BLUR, P_LIGHT, P_NOISE, P_JPEG = 0.4, 0.4, 0.6, 0.5, 0.5

# the JPEG standard's luminance quantisation table (ITU-T T.81, Annex K)
_LUMA_Q = torch.tensor(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=torch.float32,
)


def _dct_matrix(device: torch.device) -> torch.Tensor:
    k = torch.arange(8, device=device, dtype=torch.float32)
    m = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Baseline-JPEG luma round trip of (N, 1, H, W) images in [-1, 1] (H, W multiples of 8 or
    padded by replication), at a per-image ``quality`` in 1–100 (libjpeg's table scaling)."""
    n, _, h, w = x.shape
    ph, pw = (-h) % 8, (-w) % 8
    y = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
    hh, ww = y.shape[2], y.shape[3]
    pix = (y + 1) * 127.5 - 128  # level shift, as JPEG does
    blocks = pix.view(n, hh // 8, 8, ww // 8, 8).permute(0, 1, 3, 2, 4)  # n, by, bx, 8, 8
    d = _dct_matrix(x.device)
    coef = d @ blocks @ d.T
    q = quality.clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q).view(n, 1, 1, 1, 1)
    table = ((_LUMA_Q.to(x.device) * scale + 50) / 100).floor().clamp(1, 255)
    coef = torch.round(coef / table) * table
    out = (d.T @ coef @ d).permute(0, 1, 3, 2, 4).reshape(n, 1, hh, ww)
    out = ((out + 128).clamp(0, 255) / 127.5) - 1
    return out[:, :, :h, :w]


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image separable Gaussian (radius 4), as a grouped convolution."""
    n = x.shape[0]
    t = torch.arange(-4, 5, device=x.device, dtype=torch.float32)
    k = torch.exp(-(t[None, :] ** 2) / (2 * sigma.view(-1, 1) ** 2))
    k = k / k.sum(dim=1, keepdim=True)
    xp = F.pad(x.transpose(0, 1), (4, 4, 4, 4), mode="replicate")  # 1, n, H+8, W+8
    xp = F.conv2d(xp, k.view(n, 1, 1, 9), groups=n)
    xp = F.conv2d(xp, k.view(n, 1, 9, 1), groups=n)
    return xp.transpose(0, 1)


def webcam(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The conditions of the module docstring, each applied to a random subset of the batch."""
    n, _, h, w = x.shape
    dev = x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=gen, device=dev) * (hi - lo) + lo

    def pick(p: float) -> torch.Tensor:
        return (torch.rand(n, generator=gen, device=dev) < p).view(n, 1, 1, 1)

    # low resolution: one shared factor per batch (interpolate takes one size), applied to a subset
    f = float(u(0.4, 0.9)[0])
    small = F.interpolate(
        x, size=(max(8, round(h * f)), max(8, round(w * f))), mode="bilinear", antialias=True
    )
    x = torch.where(pick(P_LOWRES), F.interpolate(small, size=(h, w), mode="bilinear"), x)
    x = torch.where(pick(P_BLUR), _gaussian_blur(x, u(0.3, 1.8)), x)
    # uneven light on [0, 1]: gain, gamma, a side-light gradient
    v = ((x + 1) / 2).clamp(0, 1)
    ang = u(0, 2 * math.pi)
    yy, xx = torch.meshgrid(
        torch.linspace(-1, 1, h, device=dev), torch.linspace(-1, 1, w, device=dev), indexing="ij"
    )
    ramp = torch.cos(ang).view(n, 1, 1, 1) * xx + torch.sin(ang).view(n, 1, 1, 1) * yy
    lit = (v * u(0.5, 1.4).view(n, 1, 1, 1)).clamp(0, 1) ** u(0.6, 1.7).view(n, 1, 1, 1)
    lit = (lit * (1 + u(-0.45, 0.45).view(n, 1, 1, 1) * ramp)).clamp(0, 1)
    x = torch.where(pick(P_LIGHT), lit * 2 - 1, x)
    noise = torch.randn(x.shape, generator=gen, device=dev) * (u(1, 10) / 127.5).view(n, 1, 1, 1)
    x = torch.where(pick(P_NOISE), (x + noise).clamp(-1, 1), x)
    x = torch.where(pick(P_JPEG), jpeg(x.clamp(-1, 1), u(25, 95)), x)
    return x
