"""au_metrics.py on AU trajectories with known answers: a clip against itself, its time reversal, a
still clip, missing faces, pooling."""
import math

import numpy as np
import pytest

import au_metrics
from au_format import AU_NAMES

T = 20
AU12, AU06, AU01 = (AU_NAMES.index(n) for n in ("AU12", "AU06", "AU01"))


def smile():
    """(T, 17): AU12 rises fast to 4 at frame 3 and fades to 0 by the last frame (asymmetric); AU06
    follows at half strength; AU01 sits at a neutral baseline of 2.4 with 0.5 of jitter (never active)."""
    aus = np.zeros((T, len(AU_NAMES)))
    aus[:, AU01] = 2.4 + 0.5 * (np.arange(T) % 2)
    rise = np.r_[0, 1.5, 3, 4, np.linspace(3.8, 0, T - 4)]
    aus[:, AU12] = rise
    aus[:, AU06] = 1.3 + rise / 2
    return aus


def test_clip_against_itself_is_perfect():
    r = au_metrics.au_fidelity(smile(), smile())
    assert r["au_active_list"] == "AU06 AU12" and r["au_active"] == 2 and r["au_frames"] == T
    assert r["au_correlation"] == pytest.approx(1.0) and r["au_f1"] == 1.0
    assert (r["au_apex_driving"], r["au_apex_generated"], r["au_timing_error"]) == (3, 3, 0.0)
    assert r["au_intensity_ratio"] == pytest.approx(1.0) and (r["au_tp"], r["au_fp"], r["au_fn"]) == (2, 0, 0)
    assert r["au_driving_peak"] == pytest.approx(4 + 2)


def test_time_reversal_moves_the_apex_and_anticorrelates():
    r = au_metrics.au_fidelity(smile()[::-1], smile())
    # Reversed: the baseline is the old last frame (AU12 back at 0), the apex lands at T-1-3 = 16.
    assert r["au_apex_generated"] == 16 and r["au_timing_error"] == 13.0
    assert r["au_correlation"] < 0
    assert r["au_f1"] == 1.0 and r["au_intensity_ratio"] == pytest.approx(1.0)


def test_still_clip_shows_no_activation():
    still = np.repeat(smile()[:1], T, axis=0)
    r = au_metrics.au_fidelity(still, smile())
    assert r["au_f1"] == 0.0 and r["au_intensity_ratio"] == 0.0 and r["au_correlation"] == 0.0
    assert math.isnan(r["au_apex_generated"]) and math.isnan(r["au_timing_error"])
    assert (r["au_tp"], r["au_fp"], r["au_fn"]) == (0, 0, 2)


def test_half_strength_and_spurious_au():
    gen = smile()
    gen[:, AU12] /= 2                         # AU12 peaks at 2: still active, half as strong
    gen[:, AU06] = 1.3                        # AU06 does not move
    gen[:, AU_NAMES.index("AU45")] = np.where(np.arange(T) == 3, 3.0, 0.0)   # a blink at the apex
    r = au_metrics.au_fidelity(gen, smile())
    assert r["au_intensity_ratio"] == pytest.approx(2 / 6)
    assert r["au_per_au"] == "AU06:0.000 AU12:1.000" and r["au_correlation"] == pytest.approx(0.5)
    assert (r["au_tp"], r["au_fp"], r["au_fn"]) == (1, 1, 1) and r["au_f1"] == pytest.approx(0.5)
    assert r["au_timing_error"] == 0


def test_frames_without_a_face_are_left_out():
    drv, gen = smile(), smile()
    gen[0] = np.nan            # the baseline moves to frame 1, the first with a face in both
    drv[3] = np.nan            # the true apex is unseen: the next best frame (4) is the apex of both
    r = au_metrics.au_fidelity(gen, drv)
    assert r["au_frames"] == T - 2
    assert (r["au_apex_driving"], r["au_apex_generated"]) == (4, 4)
    assert r["au_correlation"] == pytest.approx(1.0) and r["au_f1"] == 1.0
    none = au_metrics.au_fidelity(np.full((T, 17), np.nan), drv)
    assert none["au_frames"] == 0 and math.isnan(none["au_f1"]) and math.isnan(none["au_correlation"])


def test_a_driving_clip_without_action_scores_nothing():
    flat = np.repeat(smile()[:1], T, axis=0)
    r = au_metrics.au_fidelity(smile(), flat)
    assert r["au_active"] == 0 and math.isnan(r["au_f1"]) and math.isnan(r["au_intensity_ratio"])


def test_pooling_weights_clips_by_what_entered_them():
    rows = [au_metrics.au_fidelity(smile(), smile()),
            au_metrics.au_fidelity(np.repeat(smile()[:1], T, axis=0), smile())]
    pooled = au_metrics.pool(rows)
    assert pooled["au_f1"] == pytest.approx(2 * 2 / (2 * 2 + 0 + 2))      # micro F1: tp 2, fn 2
    assert pooled["au_correlation"] == pytest.approx(0.5)
    assert pooled["au_intensity_ratio"] == pytest.approx(0.5)
    assert pooled["au_timing_error"] == 0 and pooled["au_timed_clips"] == 1 and pooled["au_scored_clips"] == 2


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="17"):
        au_metrics.au_fidelity(np.zeros((5, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="length"):
        au_metrics.au_fidelity(np.zeros((5, 17)), np.zeros((6, 17)))
