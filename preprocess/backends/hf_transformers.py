"""Any transformers depth-estimation model (``AutoModelForDepthEstimation``), batched.

The model's own image processor prepares each image and its own ``post_process_depth_estimation`` turns the
prediction into a map at the image's size (bicubic upsampling for the DPT-style heads, ZoeDepth's padding removed,
Depth Pro's canonical inverse depth turned into metres with the field of view it predicts). What the numbers are
is decided per family, from ``config.model_type`` and (Depth Anything) ``config.depth_estimation_type``:
:data:`FAMILIES`. An unsupported model type is refused with one line. fp16 on CUDA, fp32 on CPU.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from preprocess.backends import BackendError, BackendOptions, DepthBackend, DepthResult
from preprocess.depth_files import DepthReadError, read_depth_file
from preprocess.devices import pick_device
from preprocess.images import ImageReadError, load_rgb
from preprocess.weights import download_hint, hf_token


@dataclass(frozen=True)
class Family:
    """What one ``config.model_type`` gives after its processor's ``post_process_depth_estimation``."""

    name: str
    metric: bool | None         # True: depth in metres; False: relative inverse depth; None: depth_estimation_type says
    prompt: bool = False        # needs a metric prompt depth per image (--prompt-depth)
    requires: str | None = None  # config flag that must be true for metric output (Depth Pro's FoV head)
    source_sizes: bool = False  # post-processing also takes the images' sizes (ZoeDepth crops its padding)
    torchvision: bool = False   # transformers' processor or post-processing for it imports torchvision
    outputs: dict[str, str] = field(default_factory=dict)  # post-processed scalar -> per-image depth_meta.json field


#: ``config.model_type`` -> its output convention; everything else is refused.
FAMILIES: dict[str, Family] = {
    "depth_anything": Family("Depth Anything V1/V2", metric=None),
    "depth_pro": Family("Depth Pro", metric=True, requires="use_fov_model", torchvision=True,
                        outputs={"field_of_view": "field_of_view_deg", "focal_length": "focal_px"}),
    "dpt": Family("DPT / MiDaS", metric=False),
    "glpn": Family("GLPN", metric=True),
    "prompt_depth_anything": Family("Prompt Depth Anything", metric=True, prompt=True),
    "zoedepth": Family("ZoeDepth", metric=True, source_sizes=True, torchvision=True),
}


def supported_families() -> str:
    """``"depth_anything (Depth Anything V1/V2), ..."``: the model types :data:`FAMILIES` reads."""
    return ", ".join(f"{key} ({family.name})" for key, family in FAMILIES.items())


def model_family(model: str, config: Any) -> tuple[Family, str, str | None]:
    """``(family, kind, units)`` of a model from its config: ``("inverse_depth", None)`` for relative models,
    ``("depth", "m")`` for metric ones. Raises :class:`BackendError` for an unsupported model type, or a config
    that turns off what makes the family metric (Depth Pro without its field-of-view head)."""
    family = FAMILIES.get(config.model_type)
    if family is None:
        raise BackendError(f"{model}: model type {config.model_type!r} is not a depth-estimation family this reads; "
                           f"supported: {supported_families()}")
    if family.requires and not getattr(config, family.requires, False):
        raise BackendError(f"{model}: {family.name} with {family.requires}=false predicts no field of view, so its "
                           f"depth is not metric; use a checkpoint with {family.requires}=true (apple/DepthPro-hf)")
    metric = family.metric if family.metric is not None else config.depth_estimation_type == "metric"
    return (family, "depth", "m") if metric else (family, "inverse_depth", None)


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
    """Any model of :data:`FAMILIES` through ``AutoModelForDepthEstimation``; ``batch_size`` images per forward pass.

    ``prompt_files`` maps an image to its sensor depth map (any :mod:`preprocess.depth_files` kind, values x
    ``prompt_scale`` = metres, holes filled from the nearest valid pixel): Prompt Depth Anything needs one per image,
    other families take none.
    """

    name = "transformers"

    def __init__(self, model: str, device: str = "auto", batch_size: int = 1, token: str | None = None,
                 prompt_dir: Path | None = None, prompt_files: dict[Path, Path] | None = None,
                 prompt_scale: float = 1e-3) -> None:
        super().__init__(model)
        if batch_size < 1:
            raise BackendError(f"--batch-size {batch_size}: must be at least 1")
        self.device_name = device
        self.batch_size = batch_size
        self.token = token
        self.prompt_dir = prompt_dir
        self.prompt_files = prompt_files or {}
        self.prompt_scale = prompt_scale
        self.family: Family | None = None
        self.net: Any = None
        self.processor: Any = None

    @classmethod
    def from_options(cls, options: BackendOptions) -> "TransformersBackend":
        return cls(options.model, options.device, options.batch_size, options.hf_token or hf_token(),
                   options.prompt_depth, options.prompt_files, options.prompt_scale)

    def open(self) -> None:
        import torch
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForDepthEstimation
        from transformers.utils import is_torchvision_available
        from transformers.utils import logging as hf_logging

        self.device = pick_device(self.device_name)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # no "falling back to the PIL processor" banner
        try:
            config = AutoConfig.from_pretrained(self.model, token=self.token)
            self.family, self.kind, self.units = model_family(self.model, config)
            if self.family.prompt and self.prompt_dir is None:
                raise BackendError(f"{self.model}: {self.family.name} needs a metric prompt depth per image; pass "
                                   "--prompt-depth DIR (sensor depth maps named like the images) and --prompt-scale")
            if self.prompt_dir is not None and not self.family.prompt:
                raise BackendError(f"{self.model}: {self.family.name} takes no prompt depth; drop --prompt-depth")
            if self.family.torchvision and not is_torchvision_available():
                raise BackendError(f"{self.model}: transformers' {self.family.name} image processor needs "
                                   f"torchvision; pip install the torchvision build matching torch {torch.__version__}")
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

    def close(self) -> None:
        self.net = self.processor = None

    @property
    def extra(self) -> dict[str, Any]:
        extra = super().extra
        if self.net is not None:
            cfg = self.net.config
            extra.update(model_type=cfg.model_type, family=self.family.name,
                         dtype=str(self.dtype).removeprefix("torch."), input_size=processor_size(self.processor),
                         upsampling=f"{type(self.processor).__name__}.post_process_depth_estimation")
            if self.kind == "depth" and not self.family.prompt and getattr(cfg, "max_depth", None) is not None:
                extra["max_depth"] = cfg.max_depth
            if self.family.outputs:
                extra["per_image"] = list(self.family.outputs.values())
            if self.prompt_dir is not None:
                extra.update(prompt_depth=str(self.prompt_dir), prompt_scale=self.prompt_scale)
        return extra

    def prompt_depth(self, image: Path) -> tuple[np.ndarray, Path]:
        """``image``'s prompt in metres, float32 ``[h, w]`` at the sensor's resolution, and its file. Pixels that are
        0, negative, NaN or inf take the nearest valid pixel's value. Raises :class:`DepthReadError`."""
        from scipy.ndimage import distance_transform_edt

        source = self.prompt_files.get(image)
        if source is None:
            raise DepthReadError(f"{image}: no prompt depth file named like it in {self.prompt_dir}")
        depth = read_depth_file(source) * np.float32(self.prompt_scale)
        valid = np.isfinite(depth) & (depth > 0)
        if not valid.any():
            raise DepthReadError(f"{source}: no valid prompt depth (every pixel is 0, negative, NaN or inf)")
        if not valid.all():
            depth = depth[tuple(distance_transform_edt(~valid, return_distances=False, return_indices=True))]
        return depth, source

    def predict(self, paths: Sequence[Path]) -> Iterator[DepthResult]:
        batch: list[tuple[Path, dict[str, Any], tuple[int, int], dict[str, Any]]] = []
        for path in paths:
            info: dict[str, Any] = {}
            try:
                rgb = load_rgb(path)
                prompt: dict[str, Any] = {}
                if self.family.prompt:
                    depth, source = self.prompt_depth(path)
                    prompt = {"prompt_depth": depth, "prompt_scale_to_meter": 1.0}
                    info["prompt"] = source.relative_to(self.prompt_dir).as_posix()
            except (ImageReadError, DepthReadError) as e:
                yield from self._run(batch)
                batch = []
                yield DepthResult(path, None, error=str(e))
                continue
            inputs = dict(self.processor(images=rgb, return_tensors="pt", **prompt))
            shapes = {k: v.shape for k, v in inputs.items()}
            if batch and (len(batch) == self.batch_size or {k: v.shape for k, v in batch[0][1].items()} != shapes):
                yield from self._run(batch)
                batch = []
            batch.append((path, inputs, rgb.shape[:2], info))
        yield from self._run(batch)

    def _run(self, batch: list[tuple[Path, dict[str, Any], tuple[int, int], dict[str, Any]]]) -> Iterator[DepthResult]:
        """One forward pass over images whose processed inputs have equal shapes; the processor's post-processing
        (in float32) gives each image's map ``[H, W]`` at its size."""
        if not batch:
            return
        import torch

        inputs = {k: torch.cat([item[1][k] for item in batch]).to(self.device, self.dtype) for k in batch[0][1]}
        sizes = [size for _, _, size, _ in batch]
        with torch.inference_mode():
            out = self.net(**inputs)
            for k, v in out.items():
                if torch.is_tensor(v) and v.is_floating_point():
                    out[k] = v.float()
            extra = {"source_sizes": sizes} if self.family.source_sizes else {}
            results = self.processor.post_process_depth_estimation(out, target_sizes=sizes, **extra)
        self.calls += 1
        for (path, _, _, info), result in zip(batch, results):
            info.update({name: float(result[key]) for key, name in self.family.outputs.items()
                         if result.get(key) is not None})
            yield DepthResult(path, result["predicted_depth"].cpu().numpy().astype(np.float32, copy=False), info=info)
