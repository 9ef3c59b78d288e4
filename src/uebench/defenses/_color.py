"""Colour arithmetic on 8-bit images held as float tensors of whole values 0..255 (n, 3, H, W), for the colour-domain
defenses that DUNE evaluates (wxldragon/DUNE train.py, which runs OpenCV's 8-bit conversions on PIL images).

YUV is OpenCV's 8-bit fixed-point path (BT.601 with U = 0.492 (B - Y), V = 0.877 (R - Y), 14-bit coefficients,
rounded shifts, saturated), integer for integer. Lab is OpenCV's documented float definition (sRGB gamma, D65 white,
L scaled to 0..255, a and b offset by 128) rounded to whole values: OpenCV's own 8-bit Lab path uses lookup tables
and can differ from it by a level (OpenCV is not a dependency here, so that was not checked).
"""

from __future__ import annotations

import torch

SHIFT = 14  # OpenCV's yuv_shift
HALF = 1 << (SHIFT - 1)
R2Y, G2Y, B2Y = 4899, 9617, 1868  # 0.299, 0.587, 0.114 x 2^14
B2U, R2V = 8061, 14369  # 0.492, 0.877 x 2^14
U2B, U2G, V2G, V2R = 33292, -6472, -9519, 18678  # 2.032, -0.395, -0.581, 1.140 x 2^14


def levels(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] that hold k/255 values (the trainer's crop/flip of uint8 data) -> k as float."""
    return (x * 255).round_()


def _descale(v: torch.Tensor) -> torch.Tensor:
    return (v + HALF) >> SHIFT  # arithmetic shift: OpenCV's CV_DESCALE on negative sums too


def rgb_to_yuv(u: torch.Tensor) -> torch.Tensor:
    """cv2.cvtColor(RGB -> YUV) on whole values 0..255, channels first."""
    r, g, b = u.to(torch.int64).unbind(1)
    y = _descale(r * R2Y + g * G2Y + b * B2Y)
    cb = _descale((b - y) * B2U + (128 << SHIFT))
    cr = _descale((r - y) * R2V + (128 << SHIFT))
    return torch.stack([y, cb, cr], 1).clamp_(0, 255).to(u.dtype)


def yuv_to_rgb(u: torch.Tensor) -> torch.Tensor:
    """cv2.cvtColor(YUV -> RGB) on whole values 0..255, channels first."""
    y, cb, cr = u.to(torch.int64).unbind(1)
    cb, cr = cb - 128, cr - 128
    r = y + _descale(cr * V2R)
    g = y + _descale(cb * U2G + cr * V2G)
    b = y + _descale(cb * U2B)
    return torch.stack([r, g, b], 1).clamp_(0, 255).to(u.dtype)


# ---- CIE Lab (D65), OpenCV's float definition ---------------------------------------------------------------
RGB2XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    dtype=torch.float64,
)
XYZ2RGB = torch.tensor(
    [[3.240479, -1.53715, -0.498535], [-0.969256, 1.875991, 0.041556], [0.055648, -0.204043, 1.057311]],
    dtype=torch.float64,
)
WHITE = torch.tensor([0.950456, 1.0, 1.088754], dtype=torch.float64)
EPS = 0.008856  # (6/29)^3, as OpenCV rounds it
KAPPA = 903.3


def _mix(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", m.to(v.device), v)


def _f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > EPS, t.clamp(min=0).pow(1 / 3), 7.787 * t + 16 / 116)


def rgb_to_lab(u: torch.Tensor) -> torch.Tensor:
    """RGB whole values -> 8-bit Lab (L * 255/100, a + 128, b + 128), rounded and saturated."""
    v = u.to(torch.float64) / 255
    lin = torch.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055).pow(2.4))
    xyz = _mix(RGB2XYZ, lin) / WHITE.to(u.device).view(1, 3, 1, 1)
    fx, fy, fz = _f(xyz).unbind(1)
    y = xyz[:, 1]
    lum = torch.where(y > EPS, 116 * fy - 16, KAPPA * y)
    lab = torch.stack([lum * 255 / 100, 500 * (fx - fy) + 128, 200 * (fy - fz) + 128], 1)
    return lab.round_().clamp_(0, 255).to(u.dtype)


def lab_to_rgb(u: torch.Tensor) -> torch.Tensor:
    """8-bit Lab whole values -> RGB whole values, rounded and saturated."""
    lab = u.to(torch.float64)
    lum, a, b = lab[:, 0] * 100 / 255, lab[:, 1] - 128, lab[:, 2] - 128
    dark = lum <= 8
    y = torch.where(dark, lum / KAPPA, ((lum + 16) / 116).pow(3))
    fy = torch.where(dark, 7.787 * y + 16 / 116, (lum + 16) / 116)
    fx, fz = a / 500 + fy, fy - b / 200

    def inv(f: torch.Tensor) -> torch.Tensor:
        return torch.where(f > 0.206893, f.pow(3), (f - 16 / 116) / 7.787)

    xyz = torch.stack([inv(fx), y, inv(fz)], 1) * WHITE.to(u.device).view(1, 3, 1, 1)
    lin = _mix(XYZ2RGB, xyz).clamp(0, 1)
    v = torch.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin.pow(1 / 2.4) - 0.055)
    return (v * 255).round_().clamp_(0, 255).to(u.dtype)


# ---- per-image statistics ---------------------------------------------------------------------------------
def standardise(v: torch.Tensor) -> torch.Tensor:
    """Each channel of each image to mean 0, std 1 (population std; a flat channel is divided by 1)."""
    mean = v.mean(dim=(2, 3), keepdim=True)
    std = v.std(dim=(2, 3), keepdim=True, unbiased=False)
    return (v - mean) / torch.where(std < 1e-6, torch.ones_like(std), std)


def stretch(v: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Min-max to [0, 255] over `dims` of each image (a flat range gives 0), then truncated to whole values, as
    NumPy's astype(np.uint8) after a clip does."""
    lo, hi = v.amin(dim=dims, keepdim=True), v.amax(dim=dims, keepdim=True)
    span = hi - lo
    out = torch.where(span < 1e-6, torch.zeros_like(v), (v - lo) / span.clamp(min=1e-12) * 255.0)
    return out.clamp_(0, 255).floor_()
