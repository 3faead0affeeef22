"""Helpers for the data-pipeline tests: real faces from face_assets and small raw dataset trees.

Import the fixtures into a test module with ``from tests.data_helpers import face_cache, real_frames``.
Every tree is built from real faces (frames of single_face.mp4, photos), downscaled so that dlib
runs in a few milliseconds per frame.
"""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import face_assets

ROOT_DIR = Path(__file__).resolve().parents[1]
RAW_SCALE = 0.5             # single_face.mp4 is 640×360; 320×180 keeps the face at ~90 px
VIDEO_FRAMES = (0, 6, 12, 18, 24, 30, 36, 42)   # neutral → smile: frames that differ


@pytest.fixture(scope="session")
def face_cache():
    """The face_assets cache folder with every asset fetched and verified (downloads once)."""
    try:
        face_assets.all_face_assets()
    except face_assets.FaceAssetError as error:
        pytest.fail(f"real test faces unavailable: {error}")
    return face_assets.cache_dir()


@pytest.fixture(scope="session")
def real_frames(face_cache):
    """Frames VIDEO_FRAMES of single_face.mp4 at RAW_SCALE: list of (180, 320, 3) uint8."""
    return read_video_frames(face_cache / "single_face.mp4", VIDEO_FRAMES, RAW_SCALE)


@pytest.fixture(scope="session")
def photos(face_cache):
    """{name: (H, W, 3) uint8} real portrait photos, resized to 256 px wide."""
    names = ("obama.jpg", "biden.jpg", "grace_hopper.jpg", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg")
    return {name: resize_width(np.asarray(Image.open(face_cache / name).convert("RGB")), 256) for name in names}


def read_video_frames(path, indices, scale=1.0):
    """Frames at ``indices`` of a video as (H·scale, W·scale, 3) uint8, read one at a time."""
    import imageio.v2 as imageio

    wanted, frames = set(indices), {}
    with imageio.get_reader(str(path)) as reader:
        for index, frame in enumerate(reader):
            if index in wanted:
                frames[index] = resize_scale(frame, scale)
            if len(frames) == len(wanted):
                break
    return [frames[i] for i in indices]


def resize_scale(image, scale):
    if scale == 1:
        return np.asarray(image)
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC))


def resize_width(image, width):
    return resize_scale(image, width / image.shape[1])


def shifted(image, dx, dy):
    """The frame moved by (dx, dy) pixels, edges repeated: a head that moved after the onset."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((abs(dy), abs(dy)), (abs(dx), abs(dx)), (0, 0)), mode="edge")
    return padded[abs(dy) - dy:abs(dy) - dy + h, abs(dx) - dx:abs(dx) - dx + w].copy()


def no_face(shape, seed=0):
    """A smooth random image of ``shape`` in which dlib finds no face."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((shape[1], shape[0]), Image.Resampling.BICUBIC))


def save(path, image):
    """Write an image (uint8 array, any mode PIL accepts) creating folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def write_clip(folder, names, images):
    for name, image in zip(names, images):
        save(Path(folder) / name, image)
    return Path(folder)


def casme2_tree(root, frames):
    """CASME II layout: sub01/EP02_01f (img8…img12: natural order matters), sub02/EP01_01 and EP01_01f.

    Frames after the onset are shifted by 12 px, so a box re-detected on them would differ from the
    onset's. Returns the root.
    """
    onset = frames[0]
    write_clip(Path(root) / "sub01" / "EP02_01f", [f"img{n}.jpg" for n in (8, 9, 10, 11, 12)],
               [onset] + [shifted(f, 12, 6) for f in frames[1:5]])
    write_clip(Path(root) / "sub02" / "EP01_01", ["img1.jpg", "img2.jpg", "img3.jpg"], frames[2:5])
    write_clip(Path(root) / "sub02" / "EP01_01f", ["img1.jpg", "img2.jpg"], frames[5:7])
    return Path(root)


CASME2_SHEET = (
    "Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Action Units,Estimated Emotion\n"
    "1,EP02_01f,9,10,11,12,happiness\n"
    "2,EP01_01,1,2,3,4+L10,disgust\n"
    "2,EP01_01f,1,/,2,R12,others\n"
)


def samm_tree(root, frames):
    """SAMM layout: 006/006_1_2/006_05562.jpg… (two clips)."""
    write_clip(Path(root) / "006" / "006_1_2", [f"006_{n:05d}.jpg" for n in (5562, 5563, 5564)], frames[:3])
    write_clip(Path(root) / "007" / "007_7_1", [f"007_{n:05d}.jpg" for n in (99, 100)], frames[3:5])
    return Path(root)


def smic_tree(root, frames):
    """SMIC-HS layout: s1/micro/negative/s1_ne_01/image….bmp, plus a non_micro clip that must be ignored."""
    write_clip(Path(root) / "s1" / "micro" / "negative" / "s1_ne_01",
               [f"image{n:07d}.bmp" for n in (98, 99, 100)], frames[:3])
    write_clip(Path(root) / "s3" / "micro" / "positive" / "s3_po_05",
               [f"image{n:07d}.bmp" for n in (1, 2)], frames[3:5])
    write_clip(Path(root) / "s1" / "non_micro" / "s1_x_01", ["image0000001.bmp"], frames[5:6])
    return Path(root)


def megc_package(root, frames, faces):
    """A MEGC generation package: source clips of the three datasets and two template faces.

    ``faces``: {template name: (H, W, 3) uint8}. Classes come from the MEGC2021 list (EP01_01f,
    022_3_3) or the folder name (Surprise_s20_sur_01).
    """
    root = Path(root)
    write_clip(root / "source_samples" / "casme2" / "EP01_01f", ["img9.jpg", "img10.jpg"], frames[:2])
    write_clip(root / "source_samples" / "samm" / "022_3_3", ["022_03001.jpg", "022_03002.jpg"], frames[2:4])
    write_clip(root / "source_samples" / "smic" / "Surprise_s20_sur_01", ["image001.bmp", "image002.bmp"], frames[4:6])
    for name, image in faces.items():
        save(root / "target_template_face" / f"{name}.jpg", image)
    return root


OUT_SIZE = 64
MEGC_FACES = {"normalized_westernMale": "obama.jpg", "normalized_asianFemale": "0-f15-hao-ph.jpg"}


@pytest.fixture(scope="session")
def processed_root(tmp_path_factory, real_frames, photos):
    """A dataset root made by preprocess.py at 64×64: train/ from the CASME II tree, test/ from a MEGC
    package, and <root>_test.csv. No keypoints yet. Treat as read-only (copy it to change it)."""
    import preprocess

    base = tmp_path_factory.mktemp("processed")
    raw = casme2_tree(base / "raw_casme2", real_frames)
    package = megc_package(base / "raw_megc", real_frames, {k: photos[v] for k, v in MEGC_FACES.items()})
    root = base / "data" / "tiny"
    for dataset, source, split in (("casme2", raw, "train"), ("megc", package, "test")):
        code = preprocess.main(["--dataset", dataset, "--input", str(source), "--output", str(root / split),
                                "--size", str(OUT_SIZE)])
        assert code == 0, f"preprocess {dataset} failed"
    return root


@pytest.fixture(scope="session")
def keypointed_root(tmp_path_factory, processed_root):
    """processed_root copied, with kpmaker.py run on it (<root>/keypoints). Read-only."""
    import shutil

    import kpmaker

    root = tmp_path_factory.mktemp("keypointed") / "data" / "tiny"
    shutil.copytree(processed_root, root)
    shutil.copy(processed_root.parent / "tiny_test.csv", root.parent / "tiny_test.csv")
    assert kpmaker.main(["--root", str(root)]) == 0
    return root
