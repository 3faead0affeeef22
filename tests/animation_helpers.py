"""Shared set-up of the animation / evaluation tests: a tiny random checkpoint saved the way the project
saves one, and a small test split built from real faces (face_assets). Everything is built once per
session under pytest's base temp folder (a finished marker file makes later calls reuse it)."""
import csv
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "config" / "tiny.yaml"
CLIP = "Positive_smile"          # driving clip cut from single_face.mp4 (neutral → smile)
CLIP_FRAMES = 12                 # names img8 … img19: natural order differs from plain sorting
TARGETS = ("obama", "biden")


def _done(folder):
    return (Path(folder) / ".done").is_file()


def _finish(folder):
    (Path(folder) / ".done").write_text("ok")


def tiny_config(root_dir, **animate):
    from configuration import load_config

    config = load_config(TINY_CONFIG)
    config["dataset_params"]["root_dir"] = str(root_dir)
    config["dataset_params"]["pairs_list"] = str(Path(root_dir).parent / "pairs.csv")
    config["animate_params"].update(animate)
    return config


def tiny_checkpoint(folder, seed=0, gray=False):
    """A randomly initialised tiny checkpoint in the published layout. → path."""
    from configuration import build_networks, load_config

    folder = Path(folder)
    path = folder / "00000000-checkpoint.pth.tar"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    kp_detector, generator, discriminator = build_networks(load_config(TINY_CONFIG)["model_params"])
    # Random jacobian head and BN statistics so that every parameter matters (as the reference fixture).
    with torch.no_grad():
        kp_detector.jacobian.weight.normal_(0, 0.01)
        for module in list(kp_detector.modules()) + list(generator.modules()):
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.8, 1.2)
    state = {"kp_detector": kp_detector.state_dict(), "generator": generator.state_dict(),
             "discriminator": discriminator.state_dict(), "epoch": 0}
    if gray:
        state["grayscale"] = True
    torch.save(state, path)
    return path


def crop_face(image, box, size, margin=0.3):
    """preprocess.py's square crop around a (left, top, right, bottom) box, grown by ``margin`` per side."""
    from preprocess import crop_resize, square_box

    return crop_resize(image, square_box(box, margin), size)


def read_video(path, count, step=1):
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = []
    for index, raw in enumerate(reader):
        if index % step == 0:
            frames.append(np.frombuffer(raw, np.uint8).reshape(h, w, 3).copy())
        if len(frames) == count:
            break
    reader.close()
    return frames


def landmarker():
    from modules.face_landmarks import FaceLandmarker

    return FaceLandmarker()


def real_face(name, size=128, marks=None):
    """A real face photo cropped around its dlib box, (size, size, 3) uint8."""
    from face_assets import face_asset

    picture = Image.open(face_asset(name)).convert("RGB")
    # dlib's detector costs grow with the pixel count: find the box on a copy of at most 512 pixels.
    shrink = min(1.0, 512 / max(picture.size))
    small = np.asarray(picture.resize((round(picture.width * shrink), round(picture.height * shrink))))
    marks = marks or landmarker()
    box = [v / shrink for v in marks.detect(small)]
    return crop_face(np.asarray(picture), box, size)


def real_clip(count=CLIP_FRAMES, size=128, step=3, marks=None):
    """Frames of single_face.mp4 (neutral → smile), cropped with the first frame's box, as preprocessing does."""
    from face_assets import face_asset

    frames = read_video(face_asset("single_face.mp4"), count, step)
    marks = marks or landmarker()
    box = marks.detect(frames[0])
    return [crop_face(f, box, size) for f in frames]


def build_test_split(base, size=128):
    """data/test/{Positive_smile, obama, biden}/… and pairs.csv under ``base``. → root_dir."""
    base = Path(base)
    root = base / "data"
    if _done(base):
        return root
    marks = landmarker()
    clip_dir = root / "test" / CLIP
    clip_dir.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(real_clip(size=size, marks=marks)):
        Image.fromarray(frame).save(clip_dir / f"img{index + 8}.png")
    for name in TARGETS:
        folder = root / "test" / name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(real_face(f"{name}.jpg", size, marks)).save(folder / f"{name}.png")
    with open(base / "pairs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["distance", "source", "driving", "frame"])
        for name in TARGETS:
            writer.writerow([0, name, CLIP, 0])
    _finish(base)
    return root


def frame_names(folder):
    from frame_io import list_frames

    return [p.name for p in list_frames(folder)]


def args(**values):
    """An argparse-like namespace with animate/reconstruction defaults."""
    import argparse

    defaults = dict(out=None, overwrite=False, batch_frames=None, fps=None, precision="fp32", compile=False,
                    num_pairs=None, grayscale=None, device="cpu", checkpoint=None, num_videos=None)
    defaults.update(values)
    return argparse.Namespace(**defaults)


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


