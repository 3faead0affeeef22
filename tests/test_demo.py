"""demo.py end to end on a real face photo and a short real driving video (uncropped), and
video_io's writers and readers it relies on."""
import numpy as np
import pytest
from PIL import Image

import demo
import video_io
from animation_helpers import TINY_CONFIG, landmarker, read_video, tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.getbasetemp() / "tiny_checkpoint")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """obama.jpg as it ships (uncropped, 910×1137) and 6 frames of single_face.mp4 (640×360, uncropped)."""
    from face_assets import face_asset

    folder = tmp_path_factory.mktemp("demo_inputs")
    video = folder / "driving.mp4"
    with video_io.VideoWriter(str(video), 30) as writer:
        for frame in read_video(face_asset("single_face.mp4"), 6, step=6):
            writer.write(frame)
    return {"image": str(face_asset("obama.jpg")), "video": str(video), "folder": folder}


def _run(capsys, *argv):
    code = demo.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_demo_on_a_real_face_and_clip(inputs, checkpoint, tmp_path, capsys):
    result = tmp_path / "result.mp4"
    code, out, err = _run(capsys, "--config", TINY_CONFIG, "--checkpoint", checkpoint, "--source_image",
                          inputs["image"], "--driving_video", inputs["video"], "--result_video", result, "--crop",
                          "--find_best_frame", "--cpu", "--fps", 10)
    assert code == 0, err
    info = video_io.video_info(str(result))
    assert info == {"fps": 10.0, "frames": 6, "size": (64, 64)}
    assert "6 frames" in out


def test_demo_from_a_folder_side_by_side_absolute_gif(inputs, checkpoint, tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    for name, frame in video_io.iter_clip(inputs["video"]):
        Image.fromarray(frame).save(frames / name)
    result = tmp_path / "result.gif"
    argv = ["--config", TINY_CONFIG, "--checkpoint", checkpoint, "--source_image", inputs["image"],
            "--driving_video", frames, "--result_video", result, "--crop", "--absolute", "--best_frame", 3,
            "--side_by_side", "--device", "cpu", "--batch_frames", 3]
    code, out, err = _run(capsys, *argv)
    assert code == 0, err
    assert video_io.video_info(str(result))["frames"] == 6 and video_io.video_info(str(result))["size"] == (192, 64)
    assert "driving frame 3" in out
    code, _, err = _run(capsys, *argv)           # exists now: refused without --overwrite
    assert code == 2 and "--overwrite" in err


def test_demo_relative_motion_from_the_reference_frame_is_identity(inputs, checkpoint, tmp_path):
    """Relative transfer from frame N: the output frame N is exactly the target driven by itself."""
    from configuration import load_config

    config = load_config(TINY_CONFIG)
    marks = landmarker()
    a = demo.run_demo(config, str(checkpoint), inputs["image"], inputs["video"], str(tmp_path / "a.mp4"),
                      crop=True, relative=True, best_frame=2, landmarker=marks)
    b = demo.run_demo(config, str(checkpoint), inputs["image"], inputs["video"], str(tmp_path / "b.mp4"),
                      crop=True, relative=True, best_frame=5, landmarker=marks)
    assert a["reference_frame"] == 2 and b["reference_frame"] == 5
    frames_a = [f for _, f in video_io.iter_clip(str(tmp_path / "a.mp4"))]
    frames_b = [f for _, f in video_io.iter_clip(str(tmp_path / "b.mp4"))]
    # Both reference frames reproduce the same (identity-motion) image, up to the mp4 encoding.
    assert np.abs(frames_a[2].astype(int) - frames_b[5]).mean() < 3


@pytest.mark.parametrize("change, message", [
    (("--source_image", "missing.jpg"), "image not found"),
    (("--driving_video", "missing.mp4"), "no such clip"),
    (("--checkpoint", "missing.pth.tar"), "checkpoint not found"),
    (("--result_video", "out.avi"), ".mp4 or .gif"),
    (("--best_frame", "99"), "fewer frames"),
    (("--device", "tpu"), "--device"),
])
def test_bad_input_is_one_line(inputs, checkpoint, tmp_path, capsys, change, message):
    argv = {"--config": TINY_CONFIG, "--checkpoint": checkpoint, "--source_image": inputs["image"],
            "--driving_video": inputs["video"], "--result_video": tmp_path / "r.mp4"}
    flag, value = change
    argv[flag] = tmp_path / value if value.startswith(("missing", "out")) else value
    code, _, err = _run(capsys, *[x for pair in argv.items() for x in pair])
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r.mp4").exists()


def test_crop_without_a_face_is_one_line(inputs, checkpoint, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 100, 3), 200, np.uint8)).save(blank)
    code, _, err = _run(capsys, "--config", TINY_CONFIG, "--checkpoint", checkpoint, "--source_image", blank,
                        "--driving_video", inputs["video"], "--result_video", tmp_path / "r.mp4", "--crop")
    assert code == 2 and "no face" in err and "Traceback" not in err


def test_writers_are_atomic_and_videos_round_trip(tmp_path):
    frames = [np.full((33, 47, 3), v, np.uint8) for v in (10, 120, 250)]   # odd sizes survive
    for ext in (".mp4", ".gif"):
        with video_io.VideoWriter(str(tmp_path / f"v{ext}"), 8) as writer:
            for frame in frames:
                writer.write(frame)
        info = video_io.video_info(str(tmp_path / f"v{ext}"))
        assert (info["frames"], info["size"]) == (3, (47, 33))
        decoded = [f for _, f in video_io.iter_clip(str(tmp_path / f"v{ext}"))]
        assert [abs(int(f.mean()) - int(g.mean())) <= 2 for f, g in zip(decoded, frames)] == [True] * 3
    with pytest.raises(RuntimeError):
        with video_io.VideoWriter(str(tmp_path / "broken.mp4"), 8) as writer:
            writer.write(frames[0])
            raise RuntimeError("interrupted")
    with pytest.raises(RuntimeError):
        with video_io.FrameFolderWriter(str(tmp_path / "broken")) as writer:
            writer.write(frames[0], "a.jpg")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.gif", "v.mp4"]   # nothing half-written
    with video_io.FrameFolderWriter(str(tmp_path / "ok")) as writer:
        writer.write(frames[0], "img9.jpg")
    assert [p.name for p in (tmp_path / "ok").iterdir()] == ["img9.png"]


def test_strip_indices_are_bounded():
    assert video_io.strip_indices(5, 12) == [0, 1, 2, 3, 4]
    picked = video_io.strip_indices(300, 12)
    assert len(picked) == 12 and picked[0] == 0 and picked[-1] == 299
