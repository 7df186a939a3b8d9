"""A tiny randomly initialised Depth Anything model saved like a hub checkpoint (config, weights, processor)."""

from __future__ import annotations

from pathlib import Path


def save_tiny_depth_anything(dst: Path, metric: bool = False, size: int = 42, seed: int = 0) -> Path:
    """Write a ~50k-parameter DepthAnythingForDepthEstimation + DPT image processor to ``dst``; return ``dst``."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    backbone = Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                            image_size=size, patch_size=14, out_features=["stage1", "stage2"], layerscale_value=0.7,
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=16,
                                 reassemble_factors=[2, 1], neck_hidden_sizes=[8, 16], fusion_hidden_size=8,
                                 head_hidden_size=4, depth_estimation_type="metric" if metric else "relative",
                                 max_depth=20 if metric else 1)
    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(config).eval()
    model.save_pretrained(dst)
    DPTImageProcessorPil(size={"height": size, "width": size}, keep_aspect_ratio=True, ensure_multiple_of=14,
                         do_pad=False, resample=3, image_mean=[0.485, 0.456, 0.406],
                         image_std=[0.229, 0.224, 0.225]).save_pretrained(dst)
    return Path(dst)
