"""ULME-GAN's test-time AU processing (``main.get_data`` and ``Solver.test_ops``) as pure numpy functions.

ULME drives one template face with the OpenFace AU table of a driving clip:

1. Presence: an AU counts as present when its AU_c is on in at least half the frames (``presence_mask``).
2. Re-encoding: every frame's intensities are multiplied by that 0/1 mask (``re_encode``); the
   template's AUs are never re-encoded.
3. Apex: the first frame with the largest sum of (re-coded) intensities (``apex_frame``).
4. Fitting the sequence fed to the generator (``fit_sequence``): ``'linear_fitting'`` (onset → apex →
   back to the clip's last frame), ``'apex_frame'`` (template → apex → towards the template), ``'1V1'``
   (each frame's own AUs), times the intensity ``factor``.

Arrays: intensities ``au_r`` (n_frames, 17), 0..5 as OpenFace writes them, in OpenFace order
(``OPENFACE_AUS``); presence ``au_c`` (n_frames, 17) 0/1 in the same order. The generator gets
intensities / 5 in float32 (``to_generator``). The reference's own 18-column AU_c table (with AU28) is
handled by ``presence_mask_openface18`` / ``get_data_reference``.

What the reference does wrong, and what is done here:

* ``linear_fitting`` reads "the last frame" as ``X[len(paths_list) - 1]`` = ``X[1]`` (``paths_list`` always
  has two entries) from the batch it is editing in place, so it reads the already-ramped frame 1; its
  falling ramp also starts one frame late (frame t+1 repeats the apex) and never reaches its end point.
  By default the ramp here falls from the apex at frame t to the clip's real last frame at frame n-1;
  ``quirk=True`` reproduces the published numbers exactly.
* ``apex_frame`` divides by the apex index, so an apex at frame 0 raises ZeroDivisionError there. Here
  frame t always takes the apex (its weight is 1 for every t > 0 too), so t = 0 starts at the apex and
  falls towards the template. The falling ramp keeps the reference's ``(n-i)/(n-t)``, which stops one step
  short of the template; ``end_at_template=True`` makes it reach the template at the last frame.
* The reference overwrites the AU28_c sum with the AU45_c sum to line the 17 AU_c columns up with the 17
  AU_r ones; that is the same as dropping the AU28_c column.
"""
import numpy as np

OPENFACE_AUS = ('AU01', 'AU02', 'AU04', 'AU05', 'AU06', 'AU07', 'AU09', 'AU10', 'AU12', 'AU14', 'AU15',
                'AU17', 'AU20', 'AU23', 'AU25', 'AU26', 'AU45')
# OpenFace's AU_c columns: the AU_r ones plus AU28, which has no intensity.
OPENFACE_AU_C = OPENFACE_AUS[:16] + ('AU28', 'AU45')
FITTING_MODES = ('linear_fitting', 'apex_frame', '1V1')
AU_SCALE = 5.0


def presence_mask(au_c, threshold=0.5):
    """1 for each AU whose presence is on in at least ``threshold`` of the frames, else 0.

    au_c (n_frames, K) 0/1 → (K,) float64. Exactly half the frames counts as present.
    """
    au_c = np.asarray(au_c, dtype=np.float64)
    if au_c.ndim != 2 or au_c.shape[0] == 0:
        raise ValueError(f'au_c must be (n_frames > 0, K), got {au_c.shape}')
    # Sequential sums, as the reference accumulates frame by frame (exact ties at the threshold stay exact).
    counts = np.cumsum(au_c, axis=0)[-1]
    return (counts / float(au_c.shape[0]) >= threshold).astype(np.float64)


def au_c_from_openface18(au_c18):
    """OpenFace's 18 AU_c columns (with AU28) → the 17 that have an intensity. (n, 18) → (n, 17)."""
    au_c18 = np.asarray(au_c18, dtype=np.float64)
    if au_c18.shape[-1] != len(OPENFACE_AU_C):
        raise ValueError(f'expected {len(OPENFACE_AU_C)} AU_c columns, got {au_c18.shape[-1]}')
    keep = [OPENFACE_AU_C.index(name) for name in OPENFACE_AUS]
    return au_c18[..., keep]


def presence_mask_openface18(au_c18, threshold=0.5):
    """The reference's presence mask from the 18-column AU_c table: AU28's slot takes AU45's count. → (17,)."""
    return presence_mask(au_c_from_openface18(au_c18), threshold)


def re_encode(au_r, mask):
    """Zero the intensities of absent AUs: au_r (n, K) * mask (K,) → (n, K) float64."""
    return np.asarray(au_r, dtype=np.float64) * np.asarray(mask, dtype=np.float64)


def apex_frame(au_r):
    """Index of the first frame with the largest intensity sum. au_r (n, K) → int."""
    au_r = np.asarray(au_r, dtype=np.float64)
    if au_r.ndim != 2 or au_r.shape[0] == 0:
        raise ValueError(f'au_r must be (n_frames > 0, K), got {au_r.shape}')
    # Sequential per-frame sums like the reference's loop, so exact ties resolve the same way.
    return int(np.argmax(np.cumsum(au_r, axis=1)[:, -1]))


def prepare_sequence(au_r, au_c, re_code=True, threshold=0.5):
    """Presence, re-encoding and apex of one driving clip.

    au_r (n, 17) intensities, au_c (n, 17) presence → (au_r (n, 17) float64, re-encoded when
    ``re_code``; mask (17,); apex index of the returned intensities).
    """
    mask = presence_mask(au_c, threshold)
    au_r = re_encode(au_r, mask) if re_code else np.array(au_r, dtype=np.float64)
    return au_r, mask, apex_frame(au_r)


def get_data_reference(au_r, au_c18, re_code=True):
    """ULME's ``main.get_data`` on one clip's table: (au_r (n, 17) on the 0..5 scale, top_frame, mask (17,)).

    au_r (n, 17), au_c18 (n, 18) with AU28_c. ``top_frame`` is what ``get_data`` sets when
    ``linear_fitting`` or ``apex_frame`` is on and no ``--top_frame`` was given.
    """
    return prepare_sequence(au_r, au_c_from_openface18(au_c18), re_code)


def _check_top(n, top_frame):
    if not 0 <= top_frame < n:
        raise ValueError(f'top_frame {top_frame} outside the {n} frames')


def linear_fitting(tar_aus, top_frame, quirk=False):
    """Onset → apex → last frame: straight lines through frame 0, the apex t and the last frame n-1.

    tar_aus (n, K) → (n, K) float64 (a new array). ``X[i] = (i/t)·X[t] + (1-i/t)·X[0]`` for i ≤ t and
    ``X[i] = a·X[t] + (1-a)·X[n-1]``, a = (n-1-i)/(n-1-t), for i > t. ``quirk=True``: the published
    version, edited in place with a = (n-i)/(n-t-1) towards the already overwritten ``X[1]``.
    """
    x = np.array(tar_aus, dtype=np.float64)
    n = x.shape[0]
    _check_top(n, top_frame)
    if quirk:
        return _linear_fitting_published(x, top_frame)
    t = top_frame
    onset, apex, last = x[0].copy(), x[t].copy(), x[n - 1].copy()
    i = np.arange(n, dtype=np.float64)[:, None]
    rise = apex * (i / t) + onset * (1 - i / t) if t > 0 else np.broadcast_to(apex, x.shape)
    fall = (apex * ((n - 1 - i) / (n - 1 - t)) + last * (1 - (n - 1 - i) / (n - 1 - t))
            if t < n - 1 else np.broadcast_to(apex, x.shape))
    return np.where(i <= t, rise, fall)


def _linear_fitting_published(x, t):
    """Solver.test_ops' linear fitting, edit for edit on ``x`` (n, K), which it overwrites and returns."""
    n = x.shape[0]
    if n < 2:
        raise ValueError('the published linear fitting reads frame 1, so it needs at least 2 frames')
    top, last = x[t], x[1]  # views, as the reference's batch['tar_aus'][...]
    for idx in range(n):
        if idx == 0:
            x[0] = x[0]
        elif idx <= t:
            alpha = idx / float(t)
            x[idx] = alpha * top + (1 - alpha) * x[0]
        else:
            alpha = (n - idx) / float(n - t - 1)
            x[idx] = alpha * top + (1 - alpha) * last
    return x


def apex_fitting(tar_aus, src_aus, top_frame, end_at_template=False):
    """Template → apex → towards the template (ULME's ``apex_frame`` mode).

    tar_aus (n, K), src_aus (K,) the template's AUs → (n, K) float64. ``X[i] = (i/t)·X[t] + (1-i/t)·S`` for
    i ≤ t (frame t is the apex, also when t = 0), then a·X[t] + (1-a)·S with a = (n-i)/(n-t) as published,
    or a = (n-1-i)/(n-1-t) with ``end_at_template`` (the last frame is then the template).
    """
    x = np.array(tar_aus, dtype=np.float64)
    s = np.asarray(src_aus, dtype=np.float64)
    n = x.shape[0]
    _check_top(n, top_frame)
    t = top_frame
    apex = x[t].copy()
    out = np.empty_like(x)
    for idx in range(n):
        if idx <= t:
            alpha = idx / float(t) if t > 0 else 1.0
        elif end_at_template:
            alpha = (n - 1 - idx) / float(n - 1 - t)
        else:
            alpha = (n - idx) / float(n - t)
        out[idx] = alpha * apex + (1 - alpha) * s
    return out


def fit_sequence(tar_aus, mode='linear_fitting', top_frame=None, src_aus=None, factor=1.0, quirk=False,
                 end_at_template=False):
    """The AU sequence the generator gets: fitting ``mode`` then × ``factor``.

    tar_aus (n, K) on the generator's scale (intensity / 5); src_aus (K,) the template's AUs (for
    'apex_frame'); top_frame defaults to ``apex_frame(tar_aus)`` (the reference takes it from the table,
    and 0 in '1V1', where it is unused). Returns (n, K) float64; ``to_generator`` casts it.
    """
    if mode not in FITTING_MODES:
        raise ValueError(f'unknown fitting mode {mode!r}; one of {FITTING_MODES}')
    if mode == '1V1':
        fitted = np.array(tar_aus, dtype=np.float64)
    else:
        t = apex_frame(tar_aus) if top_frame is None else int(top_frame)
        if mode == 'linear_fitting':
            fitted = linear_fitting(tar_aus, t, quirk=quirk)
        else:
            if src_aus is None:
                raise ValueError("the 'apex_frame' mode ramps from the template's AUs: give src_aus")
            fitted = apex_fitting(tar_aus, src_aus, t, end_at_template=end_at_template)
    return fitted * factor


def to_generator(aus):
    """float64 AUs → the float32 array the generator is fed. (n, K) → (n, K)."""
    return np.asarray(aus).astype(np.float32)


def scale_intensities(au_r):
    """OpenFace intensities 0..5 → the generator's 0..1 scale (``/ 5`` as the ULME dataset)."""
    return np.asarray(au_r, dtype=np.float64) / AU_SCALE
