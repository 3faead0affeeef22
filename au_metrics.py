"""AU fidelity: does a generated clip show its driving clip's action units, with their timing and strength?

Pure functions on per-frame AU intensities (no files, no estimator: evaluate.py measures the AUs).
Inputs are (T, A) float arrays, A = 17 AUs in au_format.AU_NAMES order, intensities on OpenFace's
0–5 scale, a row of NaN where no face was measured. Frame t of the generated clip stands for frame t
of the driving (or real) clip. Definitions and thresholds are in docs/metrics_aus.md.

Both clips are read relative to their own first frame (micro-expressions are departures from a
neutral onset); the *baseline* is the first frame where both clips have a face, so both are read
from the same instant. Only frames where both have a face enter any value.
"""
import numpy as np

from au_format import AU_NAMES

# An AU is "active" when it rises at least this much above the baseline (0–5 scale). The built-in
# estimator's jitter on neutral frames of single_face.mp4 reaches 0.5–0.7 (AU01/AU02 brows) and 0.4
# (AU06/AU07); 1.0 (a fifth of the scale, about FACS trace level) sits above it.
ACTIVE_THRESHOLD = 1.0
MIN_FRAMES = 3   # a baseline and at least two frames after it, or no trajectory to correlate

NAN = float("nan")


def _check(values, name):
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or values.shape[1] != len(AU_NAMES):
        raise ValueError(f"{name}: expected (T, {len(AU_NAMES)}) AU intensities, got {values.shape}")
    return values


def departures(generated, driving):
    """Both clips relative to the baseline frame, over the frames where both have a face.

    (T, A) ×2 → (frames (K,) int indices into the clips, gen (K, A), drv (K, A)); row 0 is the
    baseline (all zero). K = 0 when no frame has a face in both.
    """
    generated, driving = _check(generated, "generated"), _check(driving, "driving")
    if generated.shape != driving.shape:
        raise ValueError(f"generated {generated.shape} and driving {driving.shape} differ in length")
    both = ~(np.isnan(generated).any(axis=1) | np.isnan(driving).any(axis=1))
    frames = np.flatnonzero(both)
    gen, drv = generated[frames], driving[frames]
    if len(frames):
        gen, drv = gen - gen[0], drv - drv[0]
    return frames, gen, drv


def active_aus(drv, threshold=ACTIVE_THRESHOLD):
    """(K, A) departures → (A,) bool: AUs whose largest rise above the baseline reaches ``threshold``."""
    return drv.max(axis=0) >= threshold if len(drv) else np.zeros(len(AU_NAMES), bool)


def apex_index(dep, active):
    """Index (into the K rows) of the frame with the largest summed rise of the ``active`` AUs (first on ties)."""
    return int(np.argmax(dep[:, active].sum(axis=1)))


def pearson(a, b):
    """Pearson r of two (K,) trajectories. A generated trajectory that does not move (zero variance)
    against a moving one scores 0: it shares none of the motion (r itself is undefined there)."""
    a_c, b_c = a - a.mean(), b - b.mean()
    sa, sb = np.sqrt((a_c ** 2).sum()), np.sqrt((b_c ** 2).sum())
    if sb == 0:
        return NAN
    return float((a_c * b_c).sum() / (sa * sb)) if sa > 0 else 0.0


def _names(mask):
    return " ".join(name for name, on in zip(AU_NAMES, mask) if on)


def au_fidelity(generated, driving, threshold=ACTIVE_THRESHOLD):
    """AU fidelity of one clip. (T, A) generated, (T, A) driving (NaN rows: no face) → dict:

    au_frames           frames with a face in both clips (the baseline included)
    au_active           number of AUs active in the driving clip (rise ≥ threshold); au_active_list names them
    au_correlation      mean over the active AUs of the Pearson r of the two departure trajectories
                        (per AU in au_per_au, "AU12:0.98 …"); a still generated AU counts 0
    au_apex_driving     frame index of the driving apex: largest summed rise of the active AUs
    au_apex_generated   the same for the generated clip, over the same AUs; NaN when that sum never
                        reaches ``threshold`` (nothing moved: no apex)
    au_timing_error     |apex_generated − apex_driving| in frames (NaN without a generated apex)
    au_f1               F1 of the sets of AUs active at each clip's own apex (departure ≥ threshold,
                        all 17 AUs; the driving apex frame when the generated clip has none), with
                        au_tp / au_fp / au_fn (generated set vs driving set)
    au_intensity_ratio  Σ peak rise of the active AUs, generated / driving (1 = same strength;
                        au_driving_peak is the denominator, the weight when pooling)

    Every value is NaN (counts 0) when fewer than MIN_FRAMES frames have both faces or no AU is active.
    """
    frames, gen, drv = departures(generated, driving)
    active = active_aus(drv, threshold)
    result = {"au_frames": int(len(frames)), "au_active": int(active.sum()), "au_active_list": _names(active),
              "au_correlation": NAN, "au_per_au": "", "au_apex_driving": NAN, "au_apex_generated": NAN,
              "au_timing_error": NAN, "au_f1": NAN, "au_tp": 0, "au_fp": 0, "au_fn": 0,
              "au_intensity_ratio": NAN, "au_driving_peak": NAN}
    if len(frames) < MIN_FRAMES or not active.any():
        return result
    per_au = {AU_NAMES[a]: pearson(gen[:, a], drv[:, a]) for a in np.flatnonzero(active)}
    apex_drv = apex_index(drv, active)
    moved = gen[:, active].sum(axis=1).max() >= threshold
    apex_gen = apex_index(gen, active) if moved else None
    on_drv = drv[apex_drv] >= threshold
    on_gen = gen[apex_gen if moved else apex_drv] >= threshold
    tp, fp, fn = int((on_gen & on_drv).sum()), int((on_gen & ~on_drv).sum()), int((~on_gen & on_drv).sum())
    peak_drv = float(drv[:, active].max(axis=0).sum())
    peak_gen = float(np.clip(gen[:, active].max(axis=0), 0, None).sum())
    result.update({
        "au_correlation": float(np.mean(list(per_au.values()))),
        "au_per_au": " ".join(f"{name}:{r:.3f}" for name, r in per_au.items()),
        "au_apex_driving": int(frames[apex_drv]),
        "au_apex_generated": int(frames[apex_gen]) if moved else NAN,
        "au_timing_error": float(abs(frames[apex_gen] - frames[apex_drv])) if moved else NAN,
        "au_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else NAN,
        "au_tp": tp, "au_fp": fp, "au_fn": fn,
        "au_intensity_ratio": peak_gen / peak_drv, "au_driving_peak": peak_drv})
    return result


def _weighted(values, weights):
    values, weights = np.asarray(values, np.float64), np.asarray(weights, np.float64)
    keep = ~np.isnan(values) & ~np.isnan(weights) & (weights > 0)
    return float(np.sum(values[keep] * weights[keep]) / np.sum(weights[keep])) if keep.any() else NAN


def pool(rows):
    """Pooled AU fidelity of per-clip dicts from :func:`au_fidelity` → dict:

    au_correlation: mean of the clips' values weighted by their active AUs (= mean over all active
    (clip, AU) pairs); au_f1: micro F1 from the summed tp/fp/fn; au_timing_error: mean over the clips
    that have one (au_timed_clips of them); au_intensity_ratio: Σ generated peaks / Σ driving peaks
    (clips weighted by au_driving_peak); au_scored_clips: clips with an active AU.
    """
    rows = [r for r in rows if "au_correlation" in r]
    tp = sum(int(r["au_tp"]) for r in rows)
    fp = sum(int(r["au_fp"]) for r in rows)
    fn = sum(int(r["au_fn"]) for r in rows)
    timing = [_num(r["au_timing_error"]) for r in rows if not np.isnan(_num(r["au_timing_error"]))]
    return {"au_scored_clips": sum(1 for r in rows if r["au_active"]),
            "au_correlation": _weighted([_num(r["au_correlation"]) for r in rows], [r["au_active"] for r in rows]),
            "au_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else NAN,
            "au_timing_error": float(np.mean(timing)) if timing else NAN, "au_timed_clips": len(timing),
            "au_intensity_ratio": _weighted([_num(r["au_intensity_ratio"]) for r in rows],
                                            [_num(r["au_driving_peak"]) for r in rows])}


def _num(value):
    """JSON rows carry None where a value is NaN."""
    return NAN if value is None else float(value)
