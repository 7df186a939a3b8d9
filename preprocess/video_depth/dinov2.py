"""DINOv2 ViT/14 encoder of Video Depth Anything (the ``pretrained.*`` keys of the official checkpoints).

Inference only: no dropout, drop-path, register tokens or masking. ``mask_token`` is kept because the
official state dicts hold it (strict loading); it is never used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PATCH = 14
GRID = 37  # the position table covers 37 x 37 patches (518 px), plus the class token
POS_OFFSET = 0.1  # DINOv2's interpolation offset: scale factor (n + 0.1) / 37


class PatchEmbed(nn.Module):
    """14x14 patches -> tokens: ``[N, 3, H, W] -> [N, H/14 * W/14, D]``."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention over tokens ``[N, L, D]``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class LayerScale(nn.Module):
    """Per-channel residual scale ``gamma [D]``."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """Linear D -> 4D, exact GELU, Linear 4D -> D."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both residual branches."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoV2(nn.Module):
    """ViT/14 backbone; :meth:`intermediate_layers` gives the normed patch tokens the DPT head reads."""

    def __init__(self, dim: int, depth: int, heads: int):
        super().__init__()
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + GRID * GRID, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def position_embedding(self, rows: int, cols: int) -> torch.Tensor:
        """Position table ``[1, 1 + rows*cols, D]`` for a ``rows x cols`` patch grid.

        The 37x37 table is resized bicubically (no antialias) by the scale factor (n + 0.1) / 37, as
        DINOv2 does; resizing to the target size instead would change the result by ~1e-3.
        """
        if rows == GRID and cols == GRID:
            return self.pos_embed
        table = self.pos_embed.float()
        patch = table[:, 1:].reshape(1, GRID, GRID, -1).permute(0, 3, 1, 2)
        patch = F.interpolate(patch, scale_factor=((rows + POS_OFFSET) / GRID, (cols + POS_OFFSET) / GRID),
                              mode="bicubic", antialias=False)
        if patch.shape[-2:] != (rows, cols):
            raise ValueError(f"position table resized to {tuple(patch.shape[-2:])}, expected {(rows, cols)}")
        patch = patch.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat((table[:, :1], patch), dim=1)

    def intermediate_layers(self, x: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
        """Images ``[N, 3, H, W]`` (H, W multiples of 14) -> for each block index in ``layers``, its
        output after the final norm without the class token, ``[N, (H/14)*(W/14), D]``."""
        rows, cols = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1)
        tokens = tokens + self.position_embedding(rows, cols).to(tokens.dtype)
        taken = []
        for index, block in enumerate(self.blocks):
            tokens = block(tokens)
            if index in layers:
                taken.append(self.norm(tokens)[:, 1:])
        return taken
