"""Colour arithmetic on 8-bit images held as float tensors of whole values 0..255 (n, 3, H, W), for the colour-domain
defenses that DUNE evaluates (wxldragon/DUNE train.py, which runs OpenCV's 8-bit conversions on PIL images).

YUV is OpenCV's 8-bit fixed-point path (BT.601 with U = 0.492 (B - Y), V = 0.877 (R - Y), 14-bit coefficients,
rounded shifts, saturated). Lab is OpenCV's 8-bit path (sRGB gamma, D65 white, L scaled to 0..255, a and b offset by
128), its lookup tables rebuilt as OpenCV builds them. All four conversions equal cv2.cvtColor (opencv-python-headless
5.0.0.93) on every one of the 2^24 8-bit inputs, checked when this was written; tests/test_opencv_parity.py keeps
checking a sample of them where OpenCV is installed.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

SHIFT = 14  # OpenCV's yuv_shift
R2Y, G2Y, B2Y = 4899, 9617, 1868  # 0.299, 0.587, 0.114 x 2^14
B2U, R2V = 8061, 14369  # 0.492, 0.877 x 2^14
U2B, U2G, V2G, V2R = 33292, -6472, -9519, 18678  # 2.032, -0.395, -0.581, 1.140 x 2^14


def levels(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] that hold k/255 values (the trainer's crop/flip of uint8 data) -> k as float."""
    return (x * 255).round_()


def _descale(v: torch.Tensor, shift: int = SHIFT) -> torch.Tensor:
    return (v + (1 << (shift - 1))) >> shift  # arithmetic shift: OpenCV's CV_DESCALE on negative sums too


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


# ---- CIE Lab (D65), OpenCV's 8-bit path ----------------------------------------------------------------------
# cv2.cvtColor on uint8 never evaluates the float definition: it runs integer arithmetic over lookup tables
# (color_lab.cpp: RGB2Lab_b, Lab2RGBinteger), filled once with float32/float64 arithmetic. The tables are filled here
# the same way; the float definition rounded misses OpenCV by up to 3 levels on about a tenth of the values.
LAB_SHIFT, LAB_SHIFT2, BASE = 12, 15, 1 << 14  # OpenCV's lab_shift (xyz_shift), lab_shift2, LAB_BASE
INV_SHIFT = 14  # Lab2RGBinteger's shift: 2^12 coefficients times 2^14 XYZ down to the 2^12 inverse-gamma index
D65 = np.array([0.950456, 1.0, 1.088754])
RGB2XYZ = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
XYZ2RGB = np.array([[3.240479, -1.53715, -0.498535], [-0.969256, 1.875991, 0.041556], [0.055648, -0.204043, 1.057311]])


def _gamma(x: np.ndarray, inverse: bool) -> np.ndarray:
    """OpenCV's applyGamma / applyInvGamma: float32 in, float64 arithmetic, float32 out."""
    x = x.astype(np.float64)
    if inverse:
        y = np.where(x <= 7827 / 2500000, x * (323 / 25), x ** (1 / (12 / 5)) * (1 + 11 / 200) - 11 / 200)
    else:
        y = np.where(x <= 809 / 20000, x / (323 / 25), ((x + 11 / 200) / (1 + 11 / 200)) ** (12 / 5))
    return y.astype(np.float32)


def _cbrt(x: np.ndarray) -> np.ndarray:
    """OpenCV's softfloat cbrt of positive float32 values: a rational fit in float64 on the mantissa brought to
    [1/8, 1), whose result is truncated (not rounded) to float32: correctly rounded cube roots move 2 entries by one."""
    bits = x.view(np.uint32).astype(np.int64)
    ex = ((bits >> 23) & 0xFF) - 127
    shx = np.fmod(ex, 3)
    shx = np.where(shx >= 0, shx - 3, shx)
    ex = (ex - shx) // 3 - 1
    fr = ((shx + 1023) << 52 | (bits & 0x7FFFFF) << 29).astype(np.uint64).view(np.float64)
    num = (
        ((45.2548339756803022511987494 * fr + 192.2798368355061050458134625) * fr + 119.1654824285581628956914143) * fr
        + 13.43250139086239872172837314
    ) * fr + 0.1636161226585754240958355063
    den = (
        ((14.80884093219134573786480845 * fr + 151.9714051044435648658557668) * fr + 168.5254414101568283957668343) * fr
        + 33.9905941350215598754191872
    ) * fr + 1.0
    frac = (num / den).view(np.uint64).astype(np.int64) & ((1 << 52) - 1)
    return ((ex + 127) << 23 | frac >> 29).astype(np.uint32).view(np.float32)


def _lab_tables() -> dict[str, torch.Tensor]:
    """OpenCV's initLabTabs for the 8-bit path. cvRound is round half to even, as np.rint."""
    f32 = np.float32
    rnd = np.rint
    lthresh, lscale, lbias = f32(216) / f32(24389), f32(841) / f32(108), f32(16) / f32(116)
    gamma_b = rnd(f32(2040) * _gamma(np.arange(256, dtype=f32) / f32(255), False))  # sRGB -> linear, x 255 * 2^3
    x = (f32(1) / f32(2040)) * np.arange(3 * 256 // 2 * 8, dtype=f32)
    lin = (x.astype(np.float64) * float(lscale) + float(lbias)).astype(f32)  # mulAdd: the product is exact in float64
    cbrt_b = rnd(f32(1 << LAB_SHIFT2) * np.where(x < lthresh, lin, _cbrt(x)))
    y_b, ify_b = np.zeros(256), np.zeros(256)
    for i in range(256):  # L -> (Y, f(Y)), both x BASE
        if i <= 20:
            y_b[i] = rnd(f32(i * BASE * 20 * 9) / f32(17 * 29**3))
            ify_b[i] = rnd(f32(BASE) * (f32(16) / f32(116) + f32(i * 5) / f32(3 * 17 * 29)))
        else:
            fy = f32(i * 100 * BASE) / f32(255 * 116) + f32(16 * BASE) / f32(116)
            ify_b[i], y_b[i] = rnd(fy), rnd(fy * fy * fy / f32(BASE * BASE))
    inv_gamma_b = rnd(f32(255) * _gamma((f32(1) / f32(4096)) * np.arange(4096, dtype=f32), True))
    tables = dict(gamma=gamma_b, cbrt=cbrt_b, y=y_b, ify=ify_b, inv_gamma=inv_gamma_b)
    return {k: torch.from_numpy(v.astype(np.int64)) for k, v in tables.items()}


LAB_TABLES = _lab_tables()
TO_XYZ = np.rint((1 << LAB_SHIFT) * RGB2XYZ / D65[:, None]).astype(int).tolist()  # the white point folded in
TO_RGB = np.rint((1 << LAB_SHIFT) * XYZ2RGB * D65[None, :]).astype(int).tolist()


@functools.cache
def _tables_on(device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in LAB_TABLES.items()}


def _mix(c: list[list[int]], v: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    # integer sums one by one: CUDA has no int64 matmul
    return [row[0] * v[0] + row[1] * v[1] + row[2] * v[2] for row in c]


def rgb_to_lab(u: torch.Tensor) -> torch.Tensor:
    """cv2.cvtColor(RGB -> Lab) on whole values 0..255, channels first: 8-bit Lab (L * 255/100, a + 128, b + 128)."""
    t = _tables_on(u.device)
    rgb = t["gamma"][u.to(torch.int64)].unbind(1)
    fx, fy, fz = (t["cbrt"][_descale(v, LAB_SHIFT)] for v in _mix(TO_XYZ, rgb))
    lum = _descale(296 * fy - 1336934, LAB_SHIFT2)  # OpenCV's Lscale (116 * 255/100) and Lshift (-16 * 255/100)
    a = _descale(500 * (fx - fy) + (128 << LAB_SHIFT2), LAB_SHIFT2)
    b = _descale(200 * (fy - fz) + (128 << LAB_SHIFT2), LAB_SHIFT2)
    return torch.stack([lum, a, b], 1).clamp_(0, 255).to(u.dtype)


def _ab_to_xz(f: torch.Tensor) -> torch.Tensor:
    """OpenCV's abToXZ_b: f(t) x BASE -> t x BASE, C integer division (towards zero) on the linear branch."""
    linear = torch.div(f * 108, 841, rounding_mode="trunc") - BASE * 16 // 116 * 108 // 841
    return torch.where(f <= 3390, linear, f * f // BASE * f // BASE)


def lab_to_rgb(u: torch.Tensor) -> torch.Tensor:
    """cv2.cvtColor(Lab -> RGB) on 8-bit Lab whole values, channels first."""
    t = _tables_on(u.device)
    lum, a, b = u.to(torch.int64).unbind(1)
    y, ify = t["y"][lum], t["ify"][lum]
    adiv = ((5 * a * 53687 + (1 << 7)) >> 13) - 128 * BASE // 500  # OpenCV's fixed-point a / 500 and b / 200
    bdiv = ((b * 41943 + (1 << 4)) >> 9) - 128 * BASE // 200 + 1
    xyz = (_ab_to_xz(ify + adiv), y, _ab_to_xz(ify - bdiv))
    rgb = [t["inv_gamma"][_descale(v, INV_SHIFT).clamp_(0, 4095)] for v in _mix(TO_RGB, xyz)]
    return torch.stack(rgb, 1).clamp_(0, 255).to(u.dtype)


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
