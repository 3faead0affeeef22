"""Small training sets from a real face for the training tests.

The face is scikit-image's astronaut portrait (installed with scikit-image, no download). dlib finds
its 68 landmarks once per session; every clip is a sequence of crops around the face that drift by
a few pixels (a head moving slightly), resized to the test frame size, with the prior keypoints
mapped exactly through each crop. Clips live in memory (:class:`FacePairs`, a FramesDataset-like
train dataset) or on disk in the layout frames_dataset.py and kpmaker.py use.
"""
import copy
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from configuration import load_config

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "config" / "tiny.yaml"
# Per clip: crop side in pixels of the 512×512 portrait, crop centre offset, per-frame drift.
CLIP_CROPS = ((150, (0, 0), (2, 1)), (170, (-6, 4), (-1, 2)), (140, (5, -3), (1, -2)), (160, (3, 6), (-2, -1)))


@functools.lru_cache(maxsize=1)
def astronaut_landmarks():
    """(portrait (512, 512, 3) uint8, its 68 dlib landmarks (68, 2) float32 pixels)."""
    from skimage import data

    from modules.face_landmarks import FaceLandmarker

    image = data.astronaut()
    landmarks = FaceLandmarker().landmarks(image)
    assert landmarks is not None, "dlib finds no face in skimage's astronaut"
    return image, landmarks


def face_clip(index, num_frames=4, size=64):
    """Clip ``index``: (frames (T, size, size, 3) uint8, landmarks (T, 68, 2), prior (T, 18, 2) pixels)."""
    from modules.facial_prior import prior_from_landmarks

    image, landmarks = astronaut_landmarks()
    side, (ox, oy), (dx, dy) = CLIP_CROPS[index % len(CLIP_CROPS)]
    centre = landmarks.mean(axis=0) + np.array([ox, oy], dtype=np.float32)
    frames, marks = [], []
    for t in range(num_frames):
        left = int(round(centre[0] - side / 2 + t * dx))
        top = int(round(centre[1] - side / 2 + t * dy))
        crop = image[top:top + side, left:left + side]
        frames.append(np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC)))
        # Pixel centres: crop pixel c maps to (c + 0.5)·s − 0.5 in the resized frame.
        scale = size / side
        marks.append(((landmarks - [left, top]) + 0.5) * scale - 0.5)
    marks = np.stack(marks).astype(np.float32)
    prior = prior_from_landmarks(torch.from_numpy(marks)).numpy().astype(np.float32)
    return np.stack(frames), marks, prior


class FacePairs(Dataset):
    """Train items as frames_dataset.FramesDataset gives them: two random frames of one clip with the
    clip's first-frame prior. The frame choice uses torch's default generator, as FramesDataset does."""

    def __init__(self, num_clips=2, num_frames=4, size=64):
        self.clips = [face_clip(i, num_frames, size) for i in range(num_clips)]

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, idx):
        frames, _, prior = self.clips[idx]
        i, j = torch.sort(torch.randint(len(frames), (2,))).values.tolist()
        as_tensor = lambda f: torch.from_numpy(f).permute(2, 0, 1).float() / 255  # noqa: E731
        first = torch.from_numpy(prior[0])
        return {"source": as_tensor(frames[i]), "driving": as_tensor(frames[j]),
                "source_prior": first.clone(), "driving_prior": first.clone(), "name": f"clip{idx}"}


def write_dataset(root, num_clips=2, num_frames=4, size=64):
    """The clips on disk: <root>/train/<clip>/NNN.png and kpmaker files <root>/keypoints/<clip>.npz."""
    import kpmaker

    root = Path(root)
    for index in range(num_clips):
        frames, marks, prior = face_clip(index, num_frames, size)
        name = f"Positive_clip{index}"
        folder = root / "train" / name
        folder.mkdir(parents=True, exist_ok=True)
        names = []
        for t, frame in enumerate(frames):
            names.append(f"{t:03d}.png")
            Image.fromarray(frame).save(folder / names[-1])
        arrays = {"frames": np.array(names), "landmarks": marks, "prior": prior,
                  "found": np.ones(len(frames), dtype=bool), "frame_size": np.array([size, size], dtype=np.int64)}
        kpmaker.write_keypoints(kpmaker.keypoint_path(root / "keypoints", name), arrays, "test", "test")
    return root


def tiny_config(root_dir="data/tiny", **train_overrides):
    """config/tiny.yaml with ``root_dir`` and train_params overridden (e.g. num_epochs=1)."""
    config = copy.deepcopy(load_config(TINY_CONFIG))
    config["dataset_params"]["root_dir"] = str(root_dir)
    config["train_params"].update(train_overrides)
    return config


def state_dicts_equal(a, b, atol=0.0):
    """Names of entries that differ between two state dicts (empty when equal within ``atol``)."""
    differ = [k for k in a if k not in b]
    for key, value in a.items():
        if key not in b:
            continue
        other = b[key]
        if torch.is_tensor(value):
            if value.shape != other.shape or not torch.allclose(value.double(), other.double(), atol=atol, rtol=0):
                differ.append(key)
    return differ


def write_config(path, root_dir, perceptual=True, **train_overrides):
    """A config file like a user's: config/tiny.yaml with root_dir and train_params changed
    (``perceptual=False``: no perceptual loss, so no VGG19 to build and run)."""
    import yaml

    with open(TINY_CONFIG) as handle:
        raw = yaml.safe_load(handle)
    raw["dataset_params"]["root_dir"] = str(root_dir)
    raw["train_params"].update(train_overrides)
    if not perceptual:
        raw["train_params"]["loss_weights"]["perceptual"] = [0, 0, 0, 0, 0]
    with open(path, "w") as handle:
        yaml.safe_dump(raw, handle, sort_keys=False)
    return Path(path)


@pytest.fixture(scope="session")
def face_dataset(tmp_path_factory):
    """A dataset tree (2 clips × 4 frames, 64 px, kpmaker files) shared by the command-line tests."""
    return write_dataset(tmp_path_factory.mktemp("faces"), num_clips=2, num_frames=4, size=64)
