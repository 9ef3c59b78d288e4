"""ViT-small for small images: 4x4 patches, a class token, pre-norm blocks (dim 384, depth 12, 6 heads).

SAL probes patch_embed, each block's attention out-projection, fc1, fc2 and the head; the fused qkv projection
is a bare parameter of nn.MultiheadAttention, not a Linear, so it is not probed.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model, scaled


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(nn.functional.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    def __init__(self, num_classes=10, in_channels=3, image_size=32, width=1.0, patch=4, depth=12, heads=6):
        super().__init__()
        heads = max(1, round(heads * width)) if width < 1 else heads
        dim = heads * scaled(64, 1.0)  # 64 channels per head keeps attention well-shaped at any width
        if image_size % patch:
            from ..core.errors import UserError

            raise UserError(f"vit_small needs an image size divisible by its patch size {patch}, got {image_size}")
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (image_size // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


register_model("vit_small")(ViT)
