"""EWA projection of 3D Gaussians to 2D, the math of gsplat's `fully_fused_projection` (pinhole camera).

Differentiable through PyTorch autograd. Culled Gaussians (behind the near plane, beyond the far plane, outside the
image, degenerate, or too transparent) get radii 0; their other outputs are finite but unused.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0  # contributions below this opacity are skipped (gsplat's ALPHA_THRESHOLD)
EXTEND = 3.33  # bounding box half-size in standard deviations


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """World-space covariances R S S^T R^T. quats [N, 4] (wxyz, any norm), scales [N, 3] -> [N, 3, 3]."""
    w, x, y, z = torch.nn.functional.normalize(quats, p=2, dim=-1).unbind(-1)
    rot = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(quats.shape[:-1] + (3, 3))
    m = rot * scales[..., None, :]
    return m @ m.transpose(-1, -2)


def project_gaussians(
    means: Tensor,  # [N, 3]
    covars: Tensor,  # [N, 3, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    opacities: Optional[Tensor] = None,  # [N]
    calc_compensations: bool = False,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Optional[Tensor]]:
    """Project Gaussians into C pinhole cameras.

    Returns radii [C, N, 2] int32 (pixels, 0 = culled), means2d [C, N, 2] (pixels), depths [C, N] (camera z),
    conics [C, N, 3] (upper triangle of the inverse 2D covariance), compensations [C, N] or None
    (sqrt(det(cov2d) / det(cov2d + eps2d I)), the antialiasing factor).
    When `opacities` is given, radii use gsplat's opacity-aware extent min(3.33, sqrt(2 ln(255 opacity))) and
    Gaussians with opacity below 1/255 are culled, as gsplat's CUDA `rasterization` does; without it the extent is
    3.33 (gsplat's `_torch_impl._fully_fused_projection`).
    """
    rot_c, t_c = viewmats[:, None, :3, :3], viewmats[:, None, :3, 3]  # [C, 1, 3, 3], [C, 1, 3]
    means_c = (rot_c @ means[None, :, :, None])[..., 0] + t_c  # [C, N, 3]
    x, y, z = means_c.unbind(-1)
    depth_ok = (z >= near_plane) & (z <= far_plane)
    z_safe = torch.where(depth_ok, z, torch.ones_like(z))  # keeps culled entries finite (no NaN in backward)

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    tx = z_safe * torch.minimum(torch.maximum(x / z_safe, -lim_x_neg), lim_x_pos)
    ty = z_safe * torch.minimum(torch.maximum(y / z_safe, -lim_y_neg), lim_y_pos)

    zeros = torch.zeros_like(z_safe)
    jac = torch.stack(
        [fx / z_safe, zeros, -fx * tx / (z_safe * z_safe), zeros, fy / z_safe, -fy * ty / (z_safe * z_safe)], dim=-1
    ).reshape(z.shape + (2, 3))  # [C, N, 2, 3]
    jw = jac @ rot_c  # [C, N, 2, 3]: Jacobian of the world-to-pixel map
    cov2d = jw @ covars[None] @ jw.transpose(-1, -2)  # [C, N, 2, 2]
    means2d = torch.stack([fx * x / z_safe + cx, fy * y / z_safe + cy], dim=-1)

    a, b, c = cov2d[..., 0, 0], 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]), cov2d[..., 1, 1]
    det_orig = a * c - b * b
    a, c = a + eps2d, c + eps2d
    det = a * c - b * b
    det_ok = det > 0
    det_safe = torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    compensations = None
    if calc_compensations:
        compensations = torch.sqrt(torch.clamp(det_orig / det_safe, min=0.0))

    with torch.no_grad():
        extend = torch.full_like(det, EXTEND)
        visible = depth_ok & det_ok
        if opacities is not None:
            opac = opacities[None].expand_as(det)
            if compensations is not None:
                opac = opac * compensations
            visible &= opac >= ALPHA_THRESHOLD
            extend = torch.minimum(extend, torch.sqrt(2.0 * torch.log(torch.clamp(opac / ALPHA_THRESHOLD, min=1.0))))
        radius_x = torch.ceil(extend * torch.sqrt(torch.clamp(a, min=0.0)))
        radius_y = torch.ceil(extend * torch.sqrt(torch.clamp(c, min=0.0)))
        visible &= (radius_x > radius_clip) | (radius_y > radius_clip)
        mx, my = means2d[..., 0], means2d[..., 1]
        visible &= (mx + radius_x > 0) & (mx - radius_x < width) & (my + radius_y > 0) & (my - radius_y < height)
        radii = torch.stack([radius_x, radius_y], dim=-1) * visible[..., None]
        radii = radii.clamp(max=2**30).to(torch.int32)  # huge Gaussians: keep the int32 cast defined
    return radii, means2d, z, conics, compensations
