"""Temporal DPT head of Video Depth Anything (the ``head.*`` keys of the official checkpoints).

A DPT decoder whose two coarsest encoder levels and two coarsest fusion outputs pass through a
temporal module: attention over time at every pixel. For streaming, each temporal attention sub-block
keeps the keys and values of past frames in a :class:`TemporalMemory`, so a new frame projects only
its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

MAX_FRAMES = 32  # length of the temporal position table
HEADS = 8
MICRO_BATCH = 4  # frames per chunk in the full-resolution part of the decoder (memory only)


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """Sinusoidal position table ``[1, length, dim]``: sin on even channels, cos on odd ones."""
    position = torch.arange(length).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, length, dim)
    table[0, :, 0::2] = torch.sin(position * freq)
    table[0, :, 1::2] = torch.cos(position * freq)
    return table


class PositionTable(nn.Module):
    """Holds the persistent ``pe`` buffer ``[1, 32, C]`` stored in the checkpoints."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("pe", sinusoid_table(MAX_FRAMES, dim))


@dataclass
class TemporalMemory:
    """Streaming memory of one temporal attention sub-block.

    ``keys``/``values`` ``[S, heads, slots, C/heads]`` (allocated on first use) hold past frames' key and
    value projections *without* the position term, one frame per slot (a ring buffer: nothing is copied
    when frames come and go). ``order`` (long ``[Tc]``) lists the slots of the frames the next frame
    attends to, at temporal positions ``0..Tc-1``; the next frame itself takes position ``Tc`` and is
    stored in slot ``write``. The caller (the stream) sets ``order`` and ``write`` before each frame.
    """

    slots: int
    order: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    write: int = 0
    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.keys, self.values) if t is not None)


class TemporalAttention(nn.Module):
    """Attention over time for sequences ``[S, T, C]`` (S = batch x pixels), ``[S, T, C]`` out.

    Without memory the ``T`` frames attend to each other (positions ``0..T-1``). With a
    :class:`TemporalMemory` one frame (``T = 1``) attends to the remembered frames and itself, exactly
    as if they were concatenated before it: the position term enters linearly (``to_k``/``to_v`` have no
    bias), so it is added to the logits and outputs instead of to every remembered frame.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        self.pos_encoder = PositionTable(dim)

    def forward(self, x: torch.Tensor, memory: TemporalMemory | None = None) -> torch.Tensor:
        if memory is not None:
            return self.to_out[0](self._attend_memory(x, memory))
        length = x.shape[1]
        if length > MAX_FRAMES:
            raise ValueError(f"temporal attention covers at most {MAX_FRAMES} frames, got {length}")
        seq = x + self.pos_encoder.pe[:, :length].to(x.dtype)
        q, k, v = (self._split(f(seq)) for f in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out[0](out.transpose(1, 2).reshape(x.shape))

    def _attend_memory(self, x: torch.Tensor, memory: TemporalMemory) -> torch.Tensor:
        """One frame ``x [S, 1, C]`` against the memory (which then also holds it) -> ``[S, 1, C]``."""
        s, t, channels = x.shape
        context = len(memory.order)
        if t != 1 or context >= MAX_FRAMES:
            raise ValueError(f"streaming attends one frame to at most {MAX_FRAMES - 1} earlier ones, got "
                             f"{t} frames after {context}")
        pe = self.pos_encoder.pe[0, :context + 1].to(x.dtype)  # [Tc + 1, C]
        q = self._split(self.to_q(x + pe[context]))  # [S, heads, 1, d]
        k, v = self.to_k(x[:, 0]), self.to_v(x[:, 0])  # [S, C], without the position term
        if memory.keys is None:
            memory.keys = k.new_zeros(s, HEADS, memory.slots, channels // HEADS)
            memory.values = torch.zeros_like(memory.keys)
        memory.keys[:, :, memory.write] = k.unflatten(-1, (HEADS, -1))
        memory.values[:, :, memory.write] = v.unflatten(-1, (HEADS, -1))
        slots = torch.cat((memory.order, memory.order.new_tensor([memory.write])))  # slot at each position
        pos_k = self.to_k(pe).unflatten(-1, (HEADS, -1)).transpose(0, 1)  # [heads, Tc + 1, d]
        pos_v = self.to_v(pe).unflatten(-1, (HEADS, -1)).transpose(0, 1)
        # The position terms are one matrix per head for all S pixels: einsum multiplies them as [heads, S, .]
        # products (``q @ pos_k`` would broadcast pos_k to [S, heads, d, Tc + 1] and copy it, 11% of a frame).
        logits = ((q @ memory.keys.transpose(-1, -2)).index_select(-1, slots)
                  + torch.einsum("shqd,hkd->shqk", q, pos_k))
        probs = torch.softmax(logits * q.shape[-1] ** -0.5, dim=-1)  # [S, heads, 1, Tc + 1]
        per_slot = probs.new_zeros(s, HEADS, 1, memory.slots).index_add_(-1, slots, probs)
        out = per_slot @ memory.values + torch.einsum("shqk,hkd->shqd", probs, pos_v)  # [S, heads, 1, d]
        return out.transpose(1, 2).reshape(s, 1, channels)

    @staticmethod
    def _split(t: torch.Tensor) -> torch.Tensor:
        """``[S, T, C] -> [S, heads, T, C/heads]``."""
        return t.unflatten(-1, (HEADS, -1)).transpose(1, 2)


class GEGLU(nn.Module):
    """Linear C -> 2H split into value and gate; ``value * gelu(gate)``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class TransformerBlock(nn.Module):
    """Two pre-norm temporal attention sub-blocks, then a pre-norm GEGLU feed-forward."""

    def __init__(self, dim: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalAttention(dim), TemporalAttention(dim)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim), nn.LayerNorm(dim)])
        # ``net.1`` was a dropout in the official layout; keeping the slot keeps ``net.2`` as the key.
        self.ff = nn.Module()
        self.ff.net = nn.ModuleList([GEGLU(dim, 4 * dim), nn.Identity(), nn.Linear(4 * dim, dim)])
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, memories: list[TemporalMemory] | None = None) -> torch.Tensor:
        """``x [S, T, C]``; ``memories``: one per attention sub-block (streaming) or None."""
        for i, (attention, norm) in enumerate(zip(self.attention_blocks, self.norms)):
            x = attention(norm(x), None if memories is None else memories[i]) + x
        geglu, _, proj = self.ff.net
        return proj(geglu(self.ff_norm(x))) + x


class TemporalModule(nn.Module):
    """Residual temporal transformer on feature maps ``[B*T, C, h, w]`` (frames of one clip adjacent)."""

    def __init__(self, dim: int):
        super().__init__()
        self.temporal_transformer = nn.Module()
        tt = self.temporal_transformer
        tt.norm = nn.GroupNorm(32, dim, eps=1e-6)
        tt.proj_in = nn.Linear(dim, dim)
        tt.transformer_blocks = nn.ModuleList([TransformerBlock(dim)])
        tt.proj_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, frames: int, memories: list[TemporalMemory] | None = None
                ) -> torch.Tensor:
        """Returns ``x + update [B*T, C, h, w]``; ``memories``: two per block (streaming) or None."""
        tt = self.temporal_transformer
        bt, channels, rows, cols = x.shape
        y = tt.norm(x).permute(0, 2, 3, 1)  # [B*T, h, w, C]
        y = y.reshape(bt // frames, frames, rows * cols, channels).transpose(1, 2)
        y = tt.proj_in(y.reshape(-1, frames, channels))  # [B*h*w, T, C]
        for i, block in enumerate(tt.transformer_blocks):
            y = block(y, None if memories is None else memories[2 * i:2 * i + 2])
        y = tt.proj_out(y).reshape(bt // frames, rows, cols, frames, channels)
        return y.permute(0, 3, 4, 1, 2).reshape(bt, channels, rows, cols) + x


class ResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` with 3x3 convs."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class FusionBlock(nn.Module):
    """DPT fusion: add the refined skip, refine, resize bilinearly (align_corners), 1x1 conv."""

    def __init__(self, features: int):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None,
                size: tuple[int, int] | None = None) -> torch.Tensor:
        """``size`` None doubles the resolution."""
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        resize = {"scale_factor": 2} if size is None else {"size": size}
        x = F.interpolate(x, **resize, mode="bilinear", align_corners=True)  # channels_last in and out
        return self.out_conv(x)


class DPTHeadTemporal(nn.Module):
    """Four token maps ``[B*T, h*w, D]`` -> depth ``[B*T, 1, 14h, 14w]``."""

    def __init__(self, dim: int, features: int, out_channels: tuple[int, int, int, int]):
        super().__init__()
        self.projects = nn.ModuleList(nn.Conv2d(dim, c, 1) for c in out_channels)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
        ])
        self.scratch = nn.Module()
        for i, c in enumerate(out_channels, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", FusionBlock(features))
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 1, 1), nn.ReLU())
        self.motion_modules = nn.ModuleList(
            TemporalModule(c) for c in (out_channels[2], out_channels[3], features, features))

    def forward(self, tokens: list[torch.Tensor], rows: int, cols: int, frames: int,
                memories: list[TemporalMemory] | None = None) -> torch.Tensor:
        """``tokens``: 4 maps ``[B*T, rows*cols, D]``; ``frames`` = T; ``memories``: 8 (streaming) or None."""
        levels = []
        for t, project, resize in zip(tokens, self.projects, self.resize_layers):
            x = t.permute(0, 2, 1).reshape(t.shape[0], t.shape[-1], rows, cols)
            levels.append(resize(project(x)))
        layer_1, layer_2, layer_3, layer_4 = levels

        def temporal(i: int, x: torch.Tensor) -> torch.Tensor:
            return self.motion_modules[i](x, frames, None if memories is None else memories[2 * i:2 * i + 2])

        layer_3 = temporal(0, layer_3)
        layer_4 = temporal(1, layer_4)
        sc = self.scratch
        rn_1, rn_2 = sc.layer1_rn(layer_1), sc.layer2_rn(layer_2)
        rn_3, rn_4 = sc.layer3_rn(layer_3), sc.layer4_rn(layer_4)
        path_4 = temporal(2, sc.refinenet4(rn_4, size=rn_3.shape[2:]))
        path_3 = temporal(3, sc.refinenet3(path_4, rn_3, size=rn_2.shape[2:]))
        out = [self._full_resolution(path_3[i:i + MICRO_BATCH], rn_2[i:i + MICRO_BATCH],
                                     rn_1[i:i + MICRO_BATCH], rows, cols)
               for i in range(0, path_3.shape[0], MICRO_BATCH)]
        return torch.cat(out)

    def _full_resolution(self, path_3: torch.Tensor, rn_2: torch.Tensor, rn_1: torch.Tensor,
                         rows: int, cols: int) -> torch.Tensor:
        """Last two fusions and the output convs (float32, autocast off) for a chunk of frames."""
        sc = self.scratch
        path_2 = sc.refinenet2(path_3, rn_2, size=rn_1.shape[2:])
        out = sc.output_conv1(sc.refinenet1(path_2, rn_1))
        out = F.interpolate(out, (rows * 14, cols * 14), mode="bilinear", align_corners=True)
        with torch.autocast(device_type=out.device.type, enabled=False):
            depth = sc.output_conv2(out.float())
        return depth.to(out.dtype)
