"""Local Depth Anything V2 (or any ``depth-estimation`` model transformers loads), batched.

The model's own image processor prepares each image (Depth Anything: short side to 518, multiple of
14, ImageNet normalisation); the prediction is upsampled back to the image's size with bicubic
interpolation, exactly as ``image_processor.post_process_depth_estimation`` does. fp16 on CUDA,
fp32 on CPU. Relative models give inverse depth; a config with ``depth_estimation_type == "metric"``
gives depth in metres.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from preprocess.backends import BackendError, BackendOptions, DepthBackend, DepthResult
from preprocess.images import ImageReadError, load_rgb
from preprocess.weights import download_hint, hf_token


def resolve_device(device: str):
    """``auto|cpu|cuda[:N]`` -> ``torch.device``; raises :class:`BackendError` if CUDA is asked for but absent."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"--device {device}: torch {torch.__version__} sees no CUDA GPU; use --device cpu "
                           "or install the CUDA build of torch")
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise BackendError(f"--device {device!r}: choose auto, cpu or cuda")
    return torch.device(device)


def missing_weights_message(model: str, error: Exception) -> str:
    """One line saying why ``model`` did not load and how to get it."""
    if Path(model).expanduser().exists():
        return (f"{model}: not a loadable depth-estimation model folder ({error.__class__.__name__}); pass a folder "
                "written by save_pretrained (config.json, weights, preprocessor_config.json) or a Hugging Face id")
    text = str(error).strip()
    reason = text.splitlines()[0].split(". ")[0] if text else error.__class__.__name__
    return (f"cannot load depth model {model!r} ({reason[:160]}); with internet run once: {download_hint(model)}, "
            "or pass --model /path/to/downloaded/folder")


def fold_layer_scales(model: Any) -> int:
    """Fold DINOv2's per-channel layer scales into the linear layers before them; return how many were folded.

    ``x + lambda * (W h + b)`` equals ``x + (diag(lambda) W) h + lambda b``: the same function without two
    elementwise passes over the tokens per block. Models without layer scales are left alone; a layer scale
    whose linear layer is not where transformers>=5.18 puts it (``attention.o_proj``, ``mlp.fc2``) raises
    :class:`BackendError` rather than silently staying unfolded.
    """
    import torch
    import transformers

    folded = 0
    for block in model.modules():
        pairs = (("layer_scale1", "attention.o_proj"), ("layer_scale2", "mlp.fc2"))
        for name, linear_name in pairs:
            scale = getattr(getattr(block, name, None), "lambda1", None)
            if scale is None:
                continue
            linear = block
            for part in linear_name.split("."):
                linear = getattr(linear, part, None)
            if not isinstance(linear, torch.nn.Linear) or linear.bias is None:
                raise BackendError(f"cannot fold {type(block).__name__}.{name}: no biased linear layer "
                                   f"{linear_name} before it in transformers {transformers.__version__}; "
                                   "pip install 'transformers>=5.18'")
            with torch.no_grad():
                linear.weight.mul_(scale[:, None])
                linear.bias.mul_(scale)
            setattr(block, name, torch.nn.Identity())
            folded += 1
    return folded


def processor_size(processor: Any) -> dict[str, Any] | None:
    """The image processor's target size without unset fields, e.g. ``{"height": 518, "width": 518}``."""
    size = getattr(processor, "size", None)
    items = size.items() if isinstance(size, dict) else vars(size).items() if size is not None else ()
    return {k: v for k, v in items if v is not None} or None


class TransformersBackend(DepthBackend):
    """Depth Anything V2 through ``AutoModelForDepthEstimation``; ``batch_size`` images per forward pass."""

    name = "transformers"

    def __init__(self, model: str, device: str = "auto", batch_size: int = 1, token: str | None = None) -> None:
        super().__init__(model)
        if batch_size < 1:
            raise BackendError(f"--batch-size {batch_size}: must be at least 1")
        self.device_name = device
        self.batch_size = batch_size
        self.token = token
        self.net: Any = None
        self.processor: Any = None

    @classmethod
    def from_options(cls, options: BackendOptions) -> "TransformersBackend":
        return cls(options.model, options.device, options.batch_size, options.hf_token or hf_token())

    def open(self) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation
        from transformers.utils import logging as hf_logging

        self.device = resolve_device(self.device_name)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # no "falling back to the PIL processor" banner
        try:
            self.processor = AutoImageProcessor.from_pretrained(self.model, token=self.token)
            self.net = AutoModelForDepthEstimation.from_pretrained(self.model, token=self.token)
        except (OSError, ValueError) as e:
            raise BackendError(missing_weights_message(self.model, e)) from None
        finally:
            hf_logging.set_verbosity(verbosity)
        fold_layer_scales(self.net)  # in the checkpoint's precision, before any fp16 cast
        self.net.to(self.device, self.dtype).eval()
        if self.device.type == "cpu":
            self.net.to(memory_format=torch.channels_last)  # oneDNN convolutions of the DPT head run faster
        if getattr(self.net.config, "depth_estimation_type", "relative") == "metric":
            self.kind, self.units = "depth", "m"

    def close(self) -> None:
        self.net = self.processor = None

    @property
    def extra(self) -> dict[str, Any]:
        extra = super().extra
        if self.net is not None:
            cfg = self.net.config
            extra.update(model_type=cfg.model_type, dtype=str(self.dtype).removeprefix("torch."),
                         input_size=processor_size(self.processor), upsampling="bicubic")
            if self.kind == "depth":
                extra["max_depth"] = getattr(cfg, "max_depth", None)
        return extra

    def predict(self, paths: Sequence[Path]) -> Iterator[DepthResult]:
        batch: list[tuple[Path, Any, tuple[int, int]]] = []
        for path in paths:
            try:
                rgb = load_rgb(path)
            except ImageReadError as e:
                yield from self._run(batch)
                batch = []
                yield DepthResult(path, None, error=str(e))
                continue
            pixels = self.processor(images=rgb, return_tensors="pt")["pixel_values"]
            if batch and (len(batch) == self.batch_size or batch[0][1].shape != pixels.shape):
                yield from self._run(batch)
                batch = []
            batch.append((path, pixels, rgb.shape[:2]))
        yield from self._run(batch)

    def _run(self, batch: list[tuple[Path, Any, tuple[int, int]]]) -> Iterator[DepthResult]:
        """One forward pass over images of equal processed size; upsample each map to its image's size."""
        if not batch:
            return
        import torch
        import torch.nn.functional as F

        x = torch.cat([pixels for _, pixels, _ in batch]).to(self.device, self.dtype)
        with torch.inference_mode():
            predicted = self.net(pixel_values=x).predicted_depth  # [B, h, w]
            maps = [F.interpolate(depth[None, None].float(), size=size, mode="bicubic", align_corners=False)[0, 0]
                    .cpu().numpy() for (_, _, size), depth in zip(batch, predicted)]
        self.calls += 1
        for (path, _, _), depth in zip(batch, maps):
            yield DepthResult(path, depth.astype(np.float32, copy=False))
