"""`rasterization`: gsplat 1.5.3's entry point and return values, rendered on CPU by our kernels or, for CUDA
tensors, by gsplat itself."""

from typing import Any, Dict, Literal, Optional, Tuple

import torch
from torch import Tensor

from .composite import rasterize_to_pixels
from .projection import project_gaussians
from .sh import spherical_harmonics
from .tiles import intersect_tiles, n_tiles

RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]
Backend = Literal["auto", "gsplat", "torch"]


def rasterization(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [(C,) N, D] or [(C,) N, K, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: Optional[int] = None,
    packed: bool = True,
    tile_size: int = 16,
    backgrounds: Optional[Tensor] = None,  # [C, D]
    render_mode: RenderMode = "RGB",
    sparse_grad: bool = False,
    absgrad: bool = False,
    rasterize_mode: Literal["classic", "antialiased"] = "classic",
    channel_chunk: int = 32,
    distributed: bool = False,
    camera_model: Literal["pinhole", "ortho", "fisheye", "ftheta"] = "pinhole",
    segmented: bool = False,
    covars: Optional[Tensor] = None,  # [N, 3, 3]
    with_ut: bool = False,
    with_eval3d: bool = False,
    radial_coeffs: Optional[Tensor] = None,
    tangential_coeffs: Optional[Tensor] = None,
    thin_prism_coeffs: Optional[Tensor] = None,
    ftheta_coeffs: Optional[Any] = None,
    rolling_shutter: Optional[Any] = None,  # gsplat.RollingShutterType; None means GLOBAL
    viewmats_rs: Optional[Tensor] = None,
    backend: Backend = "auto",
) -> Tuple[Tensor, Tensor, Dict[str, Any]]:
    """Render N Gaussians into C pinhole cameras; same arguments and outputs as `gsplat.rasterization`.

    backend: "auto" uses gsplat for CUDA tensors and our CPU rasterizer otherwise; "gsplat" forces gsplat
    (CUDA only); "torch" forces ours. Ours supports the pinhole camera without batch dimensions, distortion,
    rolling shutter or distributed rendering; `channel_chunk`, `sparse_grad` and `segmented` only tune gsplat.

    Returns render_colors [C, H, W, X] (X = D for "RGB", 1 for "D"/"ED", D + 1 for "RGB+D"/"RGB+ED", depth
    last), render_alphas [C, H, W, 1], and info: radii [C, N, 2] int32 (or [nnz, 2] when packed), means2d
    [C, N, 2] (pixels; `.grad` after backward when retained; `.absgrad` with absgrad=True), depths, conics,
    opacities, camera_ids/gaussian_ids (packed) or None, tile_width, tile_height, tiles_per_gauss, isect_ids,
    flatten_ids, isect_offsets, width, height, tile_size, n_batches, n_cameras.
    """
    if backend not in ("auto", "gsplat", "torch"):
        raise ValueError(f"backend must be 'auto', 'gsplat' or 'torch', got {backend!r}")
    if backend == "gsplat" or (backend == "auto" and means.is_cuda):
        if not means.is_cuda:
            raise ValueError("backend='gsplat' needs CUDA tensors; use backend='torch' (or 'auto') on CPU")
        import gsplat
        # arguments that not every gsplat>=1.5 release takes are passed only when used
        newer = {"segmented": segmented, "covars": covars, "with_ut": with_ut, "with_eval3d": with_eval3d,
                 "radial_coeffs": radial_coeffs, "tangential_coeffs": tangential_coeffs,
                 "thin_prism_coeffs": thin_prism_coeffs,
                 "ftheta_coeffs": ftheta_coeffs, "rolling_shutter": rolling_shutter, "viewmats_rs": viewmats_rs}
        return gsplat.rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane=near_plane,
            far_plane=far_plane, radius_clip=radius_clip, eps2d=eps2d, sh_degree=sh_degree, packed=packed,
            tile_size=tile_size, backgrounds=backgrounds, render_mode=render_mode, sparse_grad=sparse_grad,
            absgrad=absgrad, rasterize_mode=rasterize_mode, channel_chunk=channel_chunk, distributed=distributed,
            camera_model=camera_model, **{k: v for k, v in newer.items() if v is not None and v is not False})

    _check_supported(means, viewmats, render_mode, rasterize_mode, camera_model, distributed, with_ut, with_eval3d,
                     radial_coeffs, tangential_coeffs, thin_prism_coeffs, ftheta_coeffs, rolling_shutter, viewmats_rs)
    n_gauss, n_cams = means.shape[0], viewmats.shape[0]
    radii, means2d, depths, conics, compensations = project_gaussians(
        means, viewmats, Ks, width, height, quats=quats, scales=scales, covars=covars, eps2d=eps2d,
        near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip, opacities=opacities,
        calc_compensations=rasterize_mode == "antialiased")
    opacities = opacities[None].expand(n_cams, n_gauss)
    if compensations is not None:
        opacities = opacities * compensations
    colors = _camera_colors(colors, sh_degree, means, viewmats, n_cams, n_gauss)  # [C, N, D]

    if render_mode in ("RGB+D", "RGB+ED"):
        colors = torch.cat([colors, depths[..., None]], dim=-1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, torch.zeros_like(backgrounds[:, :1])], dim=-1)
    elif render_mode in ("D", "ED"):
        colors = depths[..., None]
        if backgrounds is not None:
            backgrounds = torch.zeros_like(backgrounds[:, :1])

    image_ids = torch.arange(n_cams).repeat_interleave(n_gauss)
    camera_ids = gaussian_ids = None
    if packed:
        camera_ids, gaussian_ids = torch.nonzero((radii > 0).all(dim=-1), as_tuple=True)
        radii, means2d, depths, conics = (t[camera_ids, gaussian_ids] for t in (radii, means2d, depths, conics))
        opacities, colors = opacities[camera_ids, gaussian_ids], colors[camera_ids, gaussian_ids]
        image_ids = camera_ids

    tile_width, tile_height = n_tiles(width, height, tile_size)
    tiles_per_gauss, isect_ids, flatten_ids, isect_offsets = intersect_tiles(
        means2d.reshape(-1, 2), radii.reshape(-1, 2), depths.reshape(-1), image_ids, n_cams, tile_size,
        tile_width, tile_height)
    render_colors, render_alphas = rasterize_to_pixels(
        means2d, conics, colors, opacities, width, height, tile_size, isect_offsets, flatten_ids,
        backgrounds=backgrounds, absgrad=absgrad)
    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat(
            [render_colors[..., :-1], render_colors[..., -1:] / render_alphas.clamp(min=1e-10)], dim=-1)

    info = {
        "batch_ids": None if not packed else torch.zeros_like(camera_ids),
        "camera_ids": camera_ids,
        "gaussian_ids": gaussian_ids,
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": opacities,
        "tile_width": tile_width,
        "tile_height": tile_height,
        "tiles_per_gauss": tiles_per_gauss if packed else tiles_per_gauss.reshape(n_cams, n_gauss),
        "isect_ids": isect_ids,
        "flatten_ids": flatten_ids,
        "isect_offsets": isect_offsets,
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "n_batches": 1,
        "n_cameras": n_cams,
    }
    return render_colors, render_alphas, info


def _camera_colors(colors: Tensor, sh_degree: Optional[int], means: Tensor, viewmats: Tensor, n_cams: int,
                   n_gauss: int) -> Tensor:
    """Per-camera colours [C, N, D]: the given values, or SH evaluated toward each camera (+0.5, clamped at 0)."""
    if sh_degree is None:
        if colors.dim() == 2:
            return colors[None].expand(n_cams, n_gauss, colors.shape[-1])
        return colors
    campos = torch.inverse(viewmats)[:, :3, 3]  # [C, 3]
    dirs = means[None] - campos[:, None]  # [C, N, 3]
    coeffs = colors[None] if colors.dim() == 3 else colors  # [1 or C, N, K, 3]
    return torch.clamp_min(spherical_harmonics(sh_degree, dirs, coeffs) + 0.5, 0.0)


def _check_supported(means, viewmats, render_mode, rasterize_mode, camera_model, distributed, with_ut, with_eval3d,
                     radial_coeffs, tangential_coeffs, thin_prism_coeffs, ftheta_coeffs, rolling_shutter,
                     viewmats_rs) -> None:
    """Refuse, with the reason, what the CPU rasterizer does not implement."""
    if means.is_cuda:
        raise ValueError("backend='torch' renders CPU tensors; move them to the CPU or use backend='gsplat'")
    if means.dim() != 2 or viewmats.dim() != 3:
        raise ValueError("the CPU rasterizer takes means [N, 3] and viewmats [C, 4, 4] (no batch dimensions)")
    if render_mode not in ("RGB", "D", "ED", "RGB+D", "RGB+ED"):
        raise ValueError(f"render_mode must be RGB, D, ED, RGB+D or RGB+ED, got {render_mode!r}")
    if rasterize_mode not in ("classic", "antialiased"):
        raise ValueError(f"rasterize_mode must be 'classic' or 'antialiased', got {rasterize_mode!r}")
    if camera_model != "pinhole":
        raise NotImplementedError(f"the CPU rasterizer supports camera_model='pinhole' only, got {camera_model!r}")
    unsupported = {"distributed": distributed, "with_ut": with_ut, "with_eval3d": with_eval3d,
                   "radial_coeffs": radial_coeffs is not None, "tangential_coeffs": tangential_coeffs is not None,
                   "thin_prism_coeffs": thin_prism_coeffs is not None, "ftheta_coeffs": ftheta_coeffs is not None,
                   "viewmats_rs": viewmats_rs is not None,
                   "rolling_shutter": getattr(rolling_shutter, "name", "GLOBAL") != "GLOBAL"}
    used = [name for name, on in unsupported.items() if on]
    if used:
        raise NotImplementedError(f"the CPU rasterizer does not support {', '.join(used)}; use CUDA (gsplat)")
