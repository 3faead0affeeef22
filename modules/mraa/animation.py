"""MRAA's animation modes (original ``animate.get_animation_region_params``).

* ``standard``: the driving frame's region parameters as they are.
* ``relative``: the driving motion since the first driving frame applied to the source regions:
  shift = μ_S + s·(μ_D − μ_D0) with s = √(area(hull μ_S) / area(hull μ_D0)) of batch element 0
  (``adapt_movement_scale``), affine = A_D·A_D0⁻¹·A_S.
* ``avd``: the AVD network on (source, driving).

The original's ``relative`` mode passes the driving frame's ``covar`` through unchanged, although the
generator's heatmaps (``use_covar_heatmap``) then describe the driving regions' shapes at the new,
source-relative positions, inconsistent with the new affine. By default the covariance here is
recomputed from the new affine as A·Aᵀ (what the region predictor's PCA and the AVD give);
``relative_covar='driving'`` keeps the published behaviour.
"""
import numpy as np
import torch
from scipy.spatial import ConvexHull

MODES = ("standard", "relative", "avd")
RELATIVE_COVAR = ("affine", "driving")


def hull_area(points):
    """Area of the convex hull of (N, 2) points (tensor), as a float (qhull works in double)."""
    return ConvexHull(points.detach().cpu().numpy()).volume


def movement_scale(source_shift, driving_shift_initial):
    """√(hull area of source / hull area of initial driving), from batch element 0. Shifts (B, R, 2)."""
    return np.sqrt(hull_area(source_shift[0])) / np.sqrt(hull_area(driving_shift_initial[0]))


def relative_region_params(source_region_params, driving_region_params, driving_region_params_initial,
                           adapt_movement_scale=True, relative_covar="affine"):
    """The ``relative`` mode. Params: 'shift' (B, R, 2), 'affine' (B, R, 2, 2); the driving batch may
    be N with source and initial batch 1 (broadcast). → the driving dict with new 'shift', 'affine'
    (and 'covar', see the module docstring)."""
    if relative_covar not in RELATIVE_COVAR:
        raise ValueError(f"relative_covar must be one of {RELATIVE_COVAR}, got {relative_covar!r}")
    new = dict(driving_region_params)
    scale = 1.0
    if adapt_movement_scale:
        scale = movement_scale(source_region_params["shift"], driving_region_params_initial["shift"])
    shift_diff = (driving_region_params["shift"] - driving_region_params_initial["shift"]) * scale
    new["shift"] = shift_diff + source_region_params["shift"]
    affine_diff = torch.matmul(driving_region_params["affine"], torch.inverse(driving_region_params_initial["affine"]))
    new["affine"] = torch.matmul(affine_diff, source_region_params["affine"])
    if relative_covar == "affine":
        new["covar"] = torch.matmul(new["affine"], new["affine"].transpose(-1, -2))
    return new


def get_animation_region_params(source_region_params, driving_region_params, driving_region_params_initial,
                                mode="standard", avd_network=None, adapt_movement_scale=True,
                                relative_covar="affine"):
    """Region parameters to drive the generator with, for the animation ``mode`` (see the module
    docstring). ``adapt_movement_scale`` (relative mode; the original always adapts) and
    ``relative_covar`` are additions; the defaults of the original's own arguments are its own."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "standard":
        return dict(driving_region_params)
    if mode == "relative":
        return relative_region_params(source_region_params, driving_region_params, driving_region_params_initial,
                                      adapt_movement_scale=adapt_movement_scale, relative_covar=relative_covar)
    if avd_network is None:
        raise ValueError("mode='avd' needs avd_network")
    n = driving_region_params["shift"].shape[0]
    if source_region_params["shift"].shape[0] == 1 and n > 1:
        # One target face against a batch of driving frames: the AVD encodes the source per sample.
        source_region_params = {k: source_region_params[k].expand(n, *source_region_params[k].shape[1:])
                                for k in ("shift", "affine")}
    return avd_network(source_region_params, driving_region_params)
