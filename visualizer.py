"""Pictures of training: the per-epoch sample sheet and the loss curves, as uint8 arrays.

Pure functions from tensors / numbers to (H, W, 3) uint8 images, drawn with numpy and PIL
(matplotlib is not a dependency). The logger decides where they go.
"""
import colorsys
import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from modules.geometry import kp2gaussian, normalized_to_pixels

# Hue span of the supported colormaps, as (start, end) fractions of the HSV circle.
# gist_rainbow (FOMM's default) runs red → yellow → green → blue → magenta.
_COLORMAPS = {"gist_rainbow": (0.0, 0.83), "rainbow": (0.75, 0.0), "hsv": (0.0, 1.0)}
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


def colors(n, colormap="gist_rainbow"):
    """n distinct RGB colours in [0, 1] along ``colormap``. (n, 3) float32.

    Unknown names fall back to gist_rainbow (matplotlib's maps are not available here).
    """
    start, end = _COLORMAPS.get(colormap, _COLORMAPS["gist_rainbow"])
    # A full circle would give the first and last keypoint the same colour.
    full_circle = abs(end - start) == 1.0
    positions = np.linspace(0, 1, n, endpoint=not full_circle) if n > 1 else np.zeros(1)
    return np.array([colorsys.hsv_to_rgb((start + (end - start) * t) % 1.0, 1.0, 1.0) for t in positions],
                    dtype=np.float32)


def to_image(tensor):
    """(C, H, W) float in [0, 1] (C = 1 or 3) → (H, W, 3) uint8."""
    array = tensor.detach().float().clamp(0, 1).cpu().numpy()
    if array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    return (np.transpose(array[:3], (1, 2, 0)) * 255).round().astype(np.uint8)


def resize(image, size):
    """(h, w, 3) uint8 → (H, W, 3) uint8; nearest, so coarse maps stay visibly coarse."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.NEAREST))


def draw_keypoints(image, values, palette, radius=5):
    """Dots at normalised keypoints ``values`` (K, 2) in [-1, 1] on ``image`` (H, W, 3) uint8."""
    h, w = image.shape[:2]
    points = normalized_to_pixels(values.detach().float().cpu(), (h, w)).numpy()
    canvas = Image.fromarray(image.copy())
    draw = ImageDraw.Draw(canvas)
    for (x, y), color in zip(points, palette):
        rgb = tuple(int(c * 255) for c in color)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=rgb)
    return np.asarray(canvas)


def coloured_masks(mask, palette):
    """Soft assignment to K+1 motions (K+1, h, w), index 0 = background → (h, w, 3) uint8.

    Each pixel is the mask-weighted mix of the keypoints' colours; background stays black.
    """
    weights = mask.detach().float().cpu().numpy()[1:]
    mixed = np.tensordot(palette[: weights.shape[0]].T, weights, axes=1)  # (3, h, w)
    return (np.transpose(np.clip(mixed, 0, 1), (1, 2, 0)) * 255).round().astype(np.uint8)


def keypoint_heatmaps(values, size, palette, variance=0.01):
    """Gaussian heatmap per keypoint, coloured and summed, normalised to its maximum. (H, W, 3) uint8.

    values (K, 2) normalised; size (H, W).
    """
    maps = kp2gaussian(values.detach().float().cpu()[None], size, variance)[0].numpy()  # (K, H, W)
    mixed = np.tensordot(palette[: maps.shape[0]].T, maps, axes=1)
    mixed = mixed / max(float(mixed.max()), 1e-8)
    return (np.transpose(mixed, (1, 2, 0)) * 255).round().astype(np.uint8)


def mosaic(tiles, size):
    """Tiles (n, h, w, 3) uint8 shrunk onto a near-square grid filling an (H, W) cell."""
    n = len(tiles)
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    h, w = size
    th, tw = max(1, h // rows), max(1, w // columns)
    cell = np.zeros((h, w, 3), dtype=np.uint8)
    for index, tile in enumerate(tiles):
        r, c = divmod(index, columns)
        cell[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = np.asarray(
            Image.fromarray(tile).resize((tw, th), Image.BILINEAR))
    return cell


def _label_strip(labels, cell_width, height, border):
    strip = Image.new("RGB", (len(labels) * (cell_width + border) + border, height), BACKGROUND)
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default()
    for index, label in enumerate(labels):
        x = border + index * (cell_width + border)
        text = label
        while text and draw.textlength(text, font=font) > cell_width - 2:
            text = text[:-1]
        draw.text((x + 1, 2), text, fill=TEXT, font=font)
    return np.asarray(strip)


MAX_ROWS = 4  # samples shown in a training sheet


def detached(value, rows=MAX_ROWS):
    """Tensors (nested in dicts) detached, first ``rows`` items, float32 on the CPU — for a sheet."""
    if isinstance(value, dict):
        return {k: detached(v, rows) for k, v in value.items()}
    if torch.is_tensor(value):
        return value[:rows].detach().float().cpu()
    return value


def sample_sheet(batch, generated, kp_size=5, colormap="gist_rainbow", draw_border=True, max_rows=MAX_ROWS):
    """The per-epoch picture: one row per sample (at most ``max_rows``), one column per stage.

    batch: 'source', 'driving' (B, C, H, W). generated: the training model's outputs — 'prediction',
    'kp_source', 'kp_driving' and, when present, 'region_mask' (B, 1, h, w), 'transformed_frame' with
    'transformed_kp', 'mask' (B, K+1, h, w), 'sparse_deformed' (B, K+1, C, h, w), 'deformed',
    'occlusion_map' (B, 1, h, w). Returns (H', W', 3) uint8 with a row of column names on top.
    """
    source, driving = batch["source"], batch["driving"]
    rows = min(max_rows, source.shape[0])
    size = tuple(source.shape[2:])
    num_kp = generated["kp_driving"]["value"].shape[1]
    palette = colors(num_kp, colormap)

    def frame_with(frames, kp, i):
        return draw_keypoints(to_image(frames[i]), kp["value"][i], palette, kp_size)

    columns = [("source", lambda i: frame_with(source, generated["kp_source"], i)),
               ("driving", lambda i: frame_with(driving, generated["kp_driving"], i))]
    if "region_mask" in generated:
        columns.append(("region mask", lambda i: resize(to_image(generated["region_mask"][i]), size)))
    if "transformed_frame" in generated:
        columns.append(("transformed", lambda i: frame_with(generated["transformed_frame"],
                                                            generated["transformed_kp"], i)))
    columns.append(("kp heatmaps", lambda i: keypoint_heatmaps(generated["kp_driving"]["value"][i], size, palette)))
    if "sparse_deformed" in generated:
        columns.append(("sparse deformed", lambda i: mosaic(
            [to_image(t) for t in generated["sparse_deformed"][i]], size)))
    if "mask" in generated:
        columns.append(("motion masks", lambda i: resize(coloured_masks(generated["mask"][i], palette), size)))
    if "deformed" in generated:
        columns.append(("deformed", lambda i: to_image(generated["deformed"][i])))
    if "occlusion_map" in generated:
        columns.append(("occlusion", lambda i: resize(to_image(generated["occlusion_map"][i]), size)))
    columns.append(("prediction", lambda i: frame_with(generated["prediction"], generated["kp_driving"], i)))

    border = 2 if draw_border else 0
    h, w = size
    sheet = np.full((rows * (h + border) + border, len(columns) * (w + border) + border, 3), 255, np.uint8)
    if border:
        sheet[:] = 160
    for r in range(rows):
        for c, (_, draw) in enumerate(columns):
            y, x = border + r * (h + border), border + c * (w + border)
            sheet[y:y + h, x:x + w] = draw(r)
    header = _label_strip([name for name, _ in columns], w, 14, border)
    return np.concatenate([header, sheet], axis=0)


def _nice(value):
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.3g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.2e}"


def _binned(points, bins):
    """(x, y) pairs reduced to at most ``bins`` means, so long runs still draw quickly."""
    if len(points) <= bins:
        return points
    xs = np.array([p[0] for p in points], dtype=np.float64)
    ys = np.array([p[1] for p in points], dtype=np.float64)
    edges = np.linspace(0, len(points), bins + 1).astype(int)
    return [(xs[a:b].mean(), ys[a:b].mean()) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def loss_curves(history, panel_size=(200, 320), columns=3):
    """One small plot per loss. history: {name: [(iteration, value), ...]} → (H, W, 3) uint8.

    Each panel has its own y range (losses differ by orders of magnitude), labelled with its min and
    max; the x axis is the iteration. Non-finite values are skipped.
    """
    names = [name for name, points in history.items() if points]
    if not names:
        names = ["(no losses yet)"]
    ph, pw = panel_size
    rows = math.ceil(len(names) / columns)
    canvas = Image.new("RGB", (min(columns, len(names)) * pw, rows * ph), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    palette = colors(max(len(names), 2))
    for index, name in enumerate(names):
        r, c = divmod(index, columns)
        x0, y0 = c * pw, r * ph
        left, top, right, bottom = x0 + 50, y0 + 18, x0 + pw - 10, y0 + ph - 18
        draw.text((x0 + 6, y0 + 3), name, fill=TEXT, font=font)
        draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))
        points = [(x, y) for x, y in history.get(name, []) if math.isfinite(y)]
        if not points:
            continue
        points = _binned(points, right - left)
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        x_lo, x_hi = min(xs), max(xs)
        y_lo, y_hi = min(ys), max(ys)
        x_span = (x_hi - x_lo) or 1.0
        y_span = (y_hi - y_lo) or (abs(y_hi) or 1.0)
        pixels = [(left + (x - x_lo) / x_span * (right - left),
                   bottom - (y - y_lo) / y_span * (bottom - top)) for x, y in points]
        color = tuple(int(v * 255 * 0.85) for v in palette[index])
        if len(pixels) == 1:
            px, py = pixels[0]
            draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=color)
        else:
            draw.line(pixels, fill=color, width=1)
        draw.text((x0 + 2, top - 2), _nice(y_hi), fill=TEXT, font=font)
        draw.text((x0 + 2, bottom - 10), _nice(y_lo), fill=TEXT, font=font)
        draw.text((left, bottom + 3), f"{x_lo:g}", fill=TEXT, font=font)
        last = f"{x_hi:g}"
        draw.text((right - draw.textlength(last, font=font), bottom + 3), last, fill=TEXT, font=font)
    return np.asarray(canvas)

