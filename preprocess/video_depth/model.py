"""Video Depth Anything: DINOv2 encoder + temporal DPT head, loaded from the official checkpoint files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from preprocess import weights
from preprocess.devices import pick_device
from preprocess.errors import S3dgsError
from preprocess.video_depth.dinov2 import PATCH, DinoV2
from preprocess.video_depth.dpt_temporal import DPTHeadTemporal, TemporalMemory


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of one VDA size (the settings the official run scripts use)."""

    dim: int
    depth: int
    heads: int
    features: int
    out_channels: tuple[int, int, int, int]
    layers: tuple[int, int, int, int]  # DINOv2 blocks whose outputs feed the head


ENCODERS: dict[str, EncoderConfig] = {
    "vits": EncoderConfig(384, 12, 6, 64, (48, 96, 192, 384), (2, 5, 8, 11)),
    "vitb": EncoderConfig(768, 12, 12, 128, (96, 192, 384, 768), (2, 5, 8, 11)),
    "vitl": EncoderConfig(1024, 24, 16, 256, (256, 512, 1024, 1024), (4, 11, 17, 23)),
}


# Frames per encoder pass on the CPU. Larger passes only enlarge the activations (a 32-frame window's MLP
# buffer is 270 MB), which then miss the caches and fault in fresh pages: one frame at a time ran the vits
# encoder 1.18x faster per frame than all 32 at once (1.15 s against 1.40 s at 518 px, one core), with
# identical outputs. CUDA keeps whole windows.
CPU_ENCODER_FRAMES = 1


class CheckpointError(S3dgsError, ValueError):
    """A checkpoint file that does not fit the requested model; the message names the file and the fix."""


def checkpoint_filename(encoder: str, metric: bool = False) -> str:
    """Official file name, e.g. ``video_depth_anything_vits.pth`` / ``metric_video_depth_anything_vitl.pth``
    (from the weights table)."""
    check_encoder(encoder)
    return weights.resolve(f"{'metric_' if metric else ''}{encoder}").filename


def check_encoder(encoder: str) -> EncoderConfig:
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}: choose one of {', '.join(ENCODERS)}")
    return ENCODERS[encoder]


class VideoDepthAnything(nn.Module):
    """``forward``: clips ``[B, T, 3, H, W]`` ImageNet-normalised, H and W multiples of 14, T <= 32 ->
    ``[B, T, H, W]``: affine-invariant inverse depth (relative models) or metres (metric models)."""

    def __init__(self, encoder: str = "vits", metric: bool = False):
        super().__init__()
        cfg = check_encoder(encoder)
        self.encoder, self.metric, self.layers = encoder, metric, cfg.layers
        self.pretrained = DinoV2(cfg.dim, cfg.depth, cfg.heads)
        self.head = DPTHeadTemporal(cfg.dim, cfg.features, cfg.out_channels)

    def forward(self, x: torch.Tensor, memories: list[TemporalMemory] | None = None) -> torch.Tensor:
        """``memories``: streaming (``B = T = 1``), the 8 temporal attention memories of this video; the
        frame attends to the frames they list and is added to them (see :class:`TemporalMemory`)."""
        b, t, _, height, width = x.shape
        if height % PATCH or width % PATCH:
            raise ValueError(f"frame size {height}x{width} is not a multiple of {PATCH}")
        depth = self.head(self.encode(x.flatten(0, 1)), height // PATCH, width // PATCH, t, memories)
        return depth.squeeze(1).unflatten(0, (b, t))

    def encode(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Frames ``[N, 3, H, W]`` -> the 4 token maps ``[N, H/14 * W/14, D]`` the head reads; on the CPU
        ``CPU_ENCODER_FRAMES`` frames per pass (the passes are freed on return, before the head runs)."""
        if frames.device.type != "cpu" or len(frames) <= CPU_ENCODER_FRAMES:
            return self.pretrained.intermediate_layers(frames, self.layers)
        passes = [self.pretrained.intermediate_layers(f, self.layers) for f in frames.split(CPU_ENCODER_FRAMES)]
        return [torch.cat(level) for level in zip(*passes)]


def _describe(state: dict[str, torch.Tensor]) -> str:
    """Which VDA size a state dict looks like, for error messages."""
    cls = state.get("pretrained.cls_token")
    blocks = {k.split(".")[2] for k in state if k.startswith("pretrained.blocks.")}
    for name, cfg in ENCODERS.items():
        if cls is not None and cls.shape[-1] == cfg.dim and len(blocks) == cfg.depth:
            return f"it looks like a {name} checkpoint"
    return "it does not look like a Video Depth Anything checkpoint"


def load_state_dict_file(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """Read a plain state-dict file (``torch.save`` of an ``OrderedDict``) onto the CPU."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors have many types; all mean "not a readable checkpoint"
        raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint ({exc}); "
                              "download it again") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a plain state dict of tensors as in the official "
                              "Video Depth Anything releases")
    return state


def build_model(encoder: str, checkpoint: str | Path, metric: bool = False) -> VideoDepthAnything:
    """Model of size ``encoder`` (vits/vitb/vitl) with the weights of an official checkpoint file, in eval
    mode on the CPU, head convolutions channels_last. Keys and shapes must match exactly; ``metric`` only records what the outputs mean
    (relative and metric checkpoints share the architecture)."""
    check_encoder(encoder)
    state = load_state_dict_file(checkpoint)
    with torch.device("meta"):
        model = VideoDepthAnything(encoder, metric)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"{len(x)} {what} ({', '.join(x[:3])}{', ...' if len(x) > 3 else ''})"
                 for x, what in ((missing, "missing keys"), (unexpected, "unexpected keys"),
                                 (wrong, "wrong shapes")) if x]
        raise CheckpointError(f"{checkpoint}: not a Video Depth Anything {encoder} checkpoint: "
                              f"{'; '.join(parts)}; {_describe(state)}")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    # The DPT head's full-resolution convolutions run about 20% faster channels_last (same numbers).
    model.head.to(memory_format=torch.channels_last)
    return model.eval()


def load_model(encoder: str = "vits", metric: bool = False, checkpoint_root: str | Path | None = None,
               device: str | torch.device | None = None) -> VideoDepthAnything:
    """The official ``encoder`` checkpoint (relative or ``metric``) from the checkpoint root (``checkpoint_root``,
    else ``$S3DGS_CHECKPOINT_ROOT``, else the user cache), on ``device`` (default: CUDA if available, else CPU).

    A missing file raises :class:`preprocess.weights.WeightsError` naming it and the download command.
    """
    check_encoder(encoder)
    path = weights.checkpoint_path(checkpoint_filename(encoder, metric).removesuffix(".pth"), checkpoint_root)
    return build_model(encoder, path, metric).to(pick_device(None if device is None else str(device)))
