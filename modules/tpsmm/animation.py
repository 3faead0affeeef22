"""TPSMM animation helpers (the original ``demo.py``): relative keypoint motion and the three
``make_animation`` modes ('standard', 'relative', 'avd')."""
import torch
from scipy.spatial import ConvexHull

ANIMATION_MODES = ("standard", "relative", "avd")


def relative_kp(kp_source, kp_driving, kp_driving_initial):
    """Source keypoints moved by the driving motion since its first frame, scaled by the source's
    size: kp_source + (kp_driving − kp_driving_initial) · sqrt(area(source) / area(initial)).

    Each {'fg_kp': (B, N, 2)}; the areas are the convex hulls of batch element 0, as the original
    (so the scale is shared by a batch of driving frames of one clip). Returns {'fg_kp': (B, N, 2)}
    plus any other keys of ``kp_driving``.
    """
    source_area = ConvexHull(kp_source["fg_kp"][0].detach().cpu().double().numpy()).volume
    driving_area = ConvexHull(kp_driving_initial["fg_kp"][0].detach().cpu().double().numpy()).volume
    adapt_movement_scale = (source_area ** 0.5) / (driving_area ** 0.5)
    kp_new = dict(kp_driving)
    kp_new["fg_kp"] = (kp_driving["fg_kp"] - kp_driving_initial["fg_kp"]) * adapt_movement_scale + kp_source["fg_kp"]
    return kp_new


def animation_kp(kp_source, kp_driving, kp_driving_initial=None, mode="relative", avd_network=None):
    """The keypoints that drive the source in ``mode`` (demo.make_animation):

    - 'standard': the driving keypoints as they are;
    - 'relative': :func:`relative_kp` (needs ``kp_driving_initial``);
    - 'avd': ``avd_network(kp_source, kp_driving)`` (source identity, driving pose; eval mode).

    kp_source {'fg_kp': (1 or B, N, 2)} is broadcast to the B driving frames.
    """
    if mode not in ANIMATION_MODES:
        raise ValueError(f"animation mode must be one of {ANIMATION_MODES}, got {mode!r}")
    if mode == "standard":
        return kp_driving
    if mode == "relative":
        if kp_driving_initial is None:
            raise ValueError("mode 'relative' needs kp_driving_initial (the first driving frame's keypoints)")
        return relative_kp(kp_source=kp_source, kp_driving=kp_driving, kp_driving_initial=kp_driving_initial)
    if avd_network is None:
        raise ValueError("mode 'avd' needs the trained avd_network")
    batch = kp_driving["fg_kp"].shape[0]
    source = {"fg_kp": kp_source["fg_kp"].expand(batch, *kp_source["fg_kp"].shape[1:])}
    return avd_network(source, kp_driving)
