"""frame_io: natural frame order, every image mode read as RGB, clear errors, clip fingerprints."""
import os

import numpy as np
import pytest
from PIL import Image

from frame_io import (FrameError, check_image, clip_folders, frame_number, frames_fingerprint, list_frames,
                      natural_key, read_rgb)
from tests.data_helpers import face_cache, real_frames, save  # noqa: F401  (fixtures)


def test_natural_order_of_dataset_frame_names(tmp_path):
    names = ["img100.jpg", "img46.jpg", "img9.jpg", "img10.jpg", "IMG47.jpg", ".hidden.jpg", "notes.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_frames(tmp_path)] == ["img9.jpg", "img10.jpg", "img46.jpg", "IMG47.jpg", "img100.jpg"]
    assert sorted(["006_05562.jpg", "006_5561.jpg"], key=natural_key) == ["006_5561.jpg", "006_05562.jpg"]
    assert sorted(["s1_ne_10", "s1_ne_9", "s1_ne_1"], key=natural_key) == ["s1_ne_1", "s1_ne_9", "s1_ne_10"]


def test_frame_numbers_of_the_three_layouts():
    assert frame_number("img46.jpg") == 46
    assert frame_number("006_05562.jpg") == 5562
    assert frame_number("image0000098.bmp") == 98
    assert frame_number("neutral.png") is None


def test_gray_rgba_palette_and_16bit_frames_read_as_rgb(tmp_path, real_frames):
    rgb = real_frames[0][:40, :50]
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    save(tmp_path / "rgba.png", np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]))
    save(tmp_path / "gray.png", gray)
    Image.fromarray(rgb).quantize(64).save(tmp_path / "palette.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "rgba.png"), rgb)
    for name in ("gray.png", "gray16.png"):
        image = read_rgb(tmp_path / name)
        assert image.shape == (40, 50, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, np.repeat(gray[..., None], 3, axis=2))
    palette = read_rgb(tmp_path / "palette.png")
    assert palette.shape == (40, 50, 3) and np.abs(palette.astype(int) - rgb).mean() < 4


def test_corrupt_and_missing_frames_name_the_file(tmp_path, real_frames):
    good = save(tmp_path / "good.png", real_frames[0])
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:2000])
    (tmp_path / "text.jpg").write_text("not an image")
    for bad in (truncated, tmp_path / "text.jpg", tmp_path / "absent.png"):
        with pytest.raises(FrameError, match=bad.name):
            read_rgb(bad)
    with pytest.raises(FrameError, match="truncated.png"):
        check_image(truncated)
    assert check_image(good) == real_frames[0].shape[:2]


def test_fingerprint_changes_when_a_frame_changes(tmp_path, real_frames):
    paths = [save(tmp_path / f"img{i}.png", frame) for i, frame in enumerate(real_frames[:3])]
    before = frames_fingerprint(paths)
    assert frames_fingerprint(paths) == before
    os.utime(paths[1], ns=(1, 1))
    assert frames_fingerprint(paths) != before
    assert frames_fingerprint(paths[:2]) != frames_fingerprint(paths)


def test_clip_folders_skip_hidden_partial_folders(tmp_path):
    for name in ("clip10", "clip9", ".partial-clip11"):
        (tmp_path / name).mkdir()
    (tmp_path / "file.png").write_bytes(b"")
    assert [p.name for p in clip_folders(tmp_path)] == ["clip9", "clip10"]
    assert clip_folders(tmp_path / "absent") == []
