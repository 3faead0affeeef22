"""Relative motion transfer: move the target face's keypoints by the driving clip's motion."""
import numpy as np
import torch
from scipy.spatial import ConvexHull


def hull_area(points):
    """Area of the convex hull of (K, 2) points (any units); 0 for degenerate sets."""
    points = np.asarray(points, dtype=np.float64)
    try:
        return float(ConvexHull(points).volume)  # in 2-D, scipy's "volume" is the area
    except Exception:  # collinear or too few points: no area to adapt to
        return 0.0


def movement_scale(kp_source_value, kp_driving_initial_value):
    """sqrt(area(hull(source)) / area(hull(driving initial))) per batch element. (B, K, 2) ×2 → (B,)."""
    src = kp_source_value.detach().cpu()
    drv = kp_driving_initial_value.detach().cpu()
    batch = max(src.shape[0], drv.shape[0])
    scales = []
    for i in range(batch):
        a_src = hull_area(src[min(i, src.shape[0] - 1)].numpy())
        a_drv = hull_area(drv[min(i, drv.shape[0] - 1)].numpy())
        scales.append(np.sqrt(a_src) / np.sqrt(a_drv) if a_drv > 0 else 1.0)
    return torch.tensor(scales, dtype=kp_source_value.dtype, device=kp_source_value.device)


def normalize_kp(kp_source, kp_driving, kp_driving_initial, adapt_movement_scale, use_relative_movement,
                 use_relative_jacobian):
    """Keypoints that drive the target face (published ``normalize_kp`` semantics).

    All arguments are {'value': (B, K, 2), 'jacobian': (B, K, 2, 2)} dicts; B may be 1 for the source
    and initial frame and N for a batch of driving frames. Relative movement:
    value = p_src + (p_drv − p_drv_initial)·s, and with relative jacobians J = (J_drv J_drv_initial⁻¹) J_src,
    s being the square root of the hull-area ratio when ``adapt_movement_scale``, else 1.
    Without relative movement the driving keypoints are returned unchanged (absolute transfer).
    """
    kp_new = dict(kp_driving)
    if not use_relative_movement:
        return kp_new
    diff = kp_driving["value"] - kp_driving_initial["value"]
    if adapt_movement_scale:
        diff = diff * movement_scale(kp_source["value"], kp_driving_initial["value"]).view(-1, 1, 1)
    kp_new["value"] = diff + kp_source["value"]
    if use_relative_jacobian and "jacobian" in kp_driving:
        jacobian_diff = kp_driving["jacobian"] @ torch.inverse(kp_driving_initial["jacobian"])
        kp_new["jacobian"] = jacobian_diff @ kp_source["jacobian"]
    return kp_new
