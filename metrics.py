"""Evaluation metrics as pure functions on arrays (no files, no dlib: evaluate.py measures faces).

Images are float arrays in [0, 1], (H, W, C). Landmarks are (68, 2) pixels (x, y) of dlib's 68-point
model, NaN where no face was found; descriptors are dlib's 128-D face descriptors, NaN where none.
Definitions are in the README ("Metrics").
"""
import numpy as np

# PSNR of identical frames is infinite; capping the MSE keeps averages finite (100 dB).
MIN_MSE = 1e-10
# dlib 68-point indices of the two eyes' contours (subject's right eye first).
RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)


def l1(generated, real):
    """Mean absolute difference. (H, W, C) ×2 in [0, 1] → float."""
    return float(np.mean(np.abs(np.asarray(generated, np.float64) - np.asarray(real, np.float64))))


def psnr(generated, real):
    """Peak signal-to-noise ratio in dB for data range 1, MSE floored at 1e-10 (≤ 100 dB). → float."""
    mse = np.mean((np.asarray(generated, np.float64) - np.asarray(real, np.float64)) ** 2)
    return float(10 * np.log10(1.0 / max(mse, MIN_MSE)))


def ssim(generated, real):
    """Structural similarity (Wang et al. 2004: Gaussian window σ 1.5, K1 0.01, K2 0.03), mean over
    channels. (H, W, C) ×2 in [0, 1] → float in [-1, 1]."""
    from skimage.metrics import structural_similarity

    generated = np.asarray(generated, np.float64)
    real = np.asarray(real, np.float64)
    return float(structural_similarity(generated, real, data_range=1.0, channel_axis=-1,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False))


def keypoint_distance(landmarks_a, landmarks_b):
    """Mean Euclidean distance between corresponding landmarks. (..., 68, 2) ×2 → (...) (NaN where
    either is missing)."""
    a = np.asarray(landmarks_a, np.float64)
    b = np.asarray(landmarks_b, np.float64)
    return np.linalg.norm(a - b, axis=-1).mean(axis=-1)


def descriptor_distance(descriptor_a, descriptor_b):
    """Euclidean distance of face descriptors. (..., 128) ×2 → (...) (NaN where either is missing).

    dlib's model separates people at about 0.6."""
    return np.linalg.norm(np.asarray(descriptor_a, np.float64) - np.asarray(descriptor_b, np.float64), axis=-1)


def missing_keypoint_rate(found_generated, found_real):
    """MKR: share of frames whose face is found in the real frame but not in the generated one.
    (T,) bool ×2 → (missed, counted) where the rate is missed / counted (counted = frames with a face
    in the real frame)."""
    found_generated = np.asarray(found_generated, bool)
    found_real = np.asarray(found_real, bool)
    return int(np.sum(found_real & ~found_generated)), int(np.sum(found_real))


def inter_ocular_distance(landmarks):
    """Distance between the two eye centres (means of the 6 contour points each). (..., 68, 2) → (...)."""
    landmarks = np.asarray(landmarks, np.float64)
    right = landmarks[..., RIGHT_EYE, :].mean(axis=-2)
    left = landmarks[..., LEFT_EYE, :].mean(axis=-2)
    return np.linalg.norm(left - right, axis=-1)


def displacement_trajectories(landmarks):
    """Landmark motion relative to the first frame, in inter-ocular distances of the first frame.
    (T, 68, 2) → (T, 68, 2); frame 0 is all zero; rows of frames without a face stay NaN."""
    landmarks = np.asarray(landmarks, np.float64)
    return (landmarks - landmarks[:1]) / inter_ocular_distance(landmarks[0])


def motion_transfer(generated_landmarks, driving_landmarks):
    """How well the generated clip repeats the driving clip's facial motion.

    (T, 68, 2) ×2 → {'correlation', 'magnitude_ratio', 'frames'}: both clips' displacement
    trajectories (see ``displacement_trajectories``) over frames 1… where both have a face;
    correlation = Pearson r of all their components (frames × landmarks × x/y) taken together;
    magnitude_ratio = mean displacement length of generated / of driving (1 = same amplitude).
    NaN when frame 0 lacks a face in either clip, or when fewer than two frames remain.
    """
    generated = np.asarray(generated_landmarks, np.float64)
    driving = np.asarray(driving_landmarks, np.float64)
    if generated.shape != driving.shape or generated.ndim != 3:
        raise ValueError(f"expected two (T, 68, 2) arrays of one shape, got {generated.shape} and {driving.shape}")
    nan = {"correlation": float("nan"), "magnitude_ratio": float("nan"), "frames": 0}
    if np.isnan(generated[0]).any() or np.isnan(driving[0]).any():
        return nan
    d_gen = displacement_trajectories(generated)[1:]
    d_drv = displacement_trajectories(driving)[1:]
    both = ~(np.isnan(d_gen).any(axis=(1, 2)) | np.isnan(d_drv).any(axis=(1, 2)))
    if both.sum() < 2:
        return nan
    d_gen, d_drv = d_gen[both], d_drv[both]
    a, b = d_gen.ravel(), d_drv.ravel()
    a_c, b_c = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a_c**2).sum() * (b_c**2).sum())
    correlation = float((a_c * b_c).sum() / denominator) if denominator > 0 else float("nan")
    drv_length = np.linalg.norm(d_drv, axis=-1).mean()
    ratio = float(np.linalg.norm(d_gen, axis=-1).mean() / drv_length) if drv_length > 0 else float("nan")
    return {"correlation": correlation, "magnitude_ratio": ratio, "frames": int(both.sum())}


def face_region_mask(landmarks, frame_size, margin=0.1, forehead=0.4):
    """Boolean mask of the face region: the landmarks' bounding box widened by ``margin`` of its size
    on each side and raised by ``forehead`` of its height (the 68 points stop at the brows).
    (68, 2), (H, W) → (H, W) bool."""
    h, w = frame_size
    landmarks = np.asarray(landmarks, np.float64)
    x0, y0 = landmarks.min(axis=0)
    x1, y1 = landmarks.max(axis=0)
    bw, bh = x1 - x0, y1 - y0
    left, right = x0 - margin * bw, x1 + margin * bw
    top, bottom = y0 - (margin + forehead) * bh, y1 + margin * bh
    rows = np.arange(h)[:, None]
    cols = np.arange(w)[None, :]
    return (rows >= top) & (rows <= bottom) & (cols >= left) & (cols <= right)


def frame_change(previous, current, outside=None):
    """Mean absolute change between consecutive frames, over pixels where ``outside`` is True (all
    pixels when None). (H, W, C) ×2 in [0, 1], (H, W) bool → float (NaN when no pixel is selected)."""
    change = np.abs(np.asarray(current, np.float64) - np.asarray(previous, np.float64)).mean(axis=-1)
    if outside is not None:
        if not outside.any():
            return float("nan")
        change = change[outside]
    return float(change.mean())
