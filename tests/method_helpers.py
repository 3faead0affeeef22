"""What every method's test does: train through run.py, resume exactly, animate the pairs and
reconstruct the clips, on a small dataset of real faces. A method's own test file calls
:func:`round_trip` with its tiny config (config/tiny_<method>.yaml)."""
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import checkpoint as ckpt
import run
from tests.train_helpers import ROOT, face_clip, write_dataset

TEST_CLIP, TARGET = "Positive_clip9", "target_face"


def run_main(capsys, *argv):
    """run.main in this process: (exit code, stderr)."""
    try:
        code = run.main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def write_faces(root):
    """A dataset on disk: train/ (2 clips × 4 frames + kpmaker files) and test/ (clip ``TEST_CLIP`` of
    3 frames with its kpmaker file, and the target face ``TARGET``, a mirrored frame of another clip
    whose prior dlib measures on the fly), 64×64 real faces."""
    import kpmaker

    root = write_dataset(root, num_clips=2, num_frames=4, size=64)
    frames, marks, prior = face_clip(2, num_frames=3, size=64)
    clip = root / "test" / TEST_CLIP
    clip.mkdir(parents=True)
    names = [f"img{t + 1}.png" for t in range(3)]
    for name, frame in zip(names, frames):
        Image.fromarray(frame).save(clip / name)
    arrays = {"frames": np.array(names), "landmarks": marks, "prior": prior,
              "found": np.ones(3, dtype=bool), "frame_size": np.array([64, 64], dtype=np.int64)}
    kpmaker.write_keypoints(kpmaker.keypoint_path(root / "keypoints", TEST_CLIP), arrays, "test", "test")
    (root / "test" / TARGET).mkdir()
    Image.fromarray(frames[-1][:, ::-1].copy()).save(root / "test" / TARGET / "img1.png")
    return root


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return write_faces(tmp_path_factory.mktemp("faces"))


def write_config(path, tiny_config, root, **train):
    """``tiny_config`` (a path under config/) with root_dir and train_params changed; no perceptual
    loss (no VGG19 to build) where the method has one."""
    raw = yaml.safe_load((ROOT / tiny_config).read_text())
    raw["dataset_params"]["root_dir"] = str(root)
    raw["train_params"].update(train)
    weights = raw["train_params"].get("loss_weights", {})
    if "perceptual" in weights:
        weights["perceptual"] = [0] * len(weights["perceptual"])
    Path(path).write_text(yaml.safe_dump(raw, sort_keys=False))
    return Path(path)


def assert_same_weights(a, b, networks):
    for name in networks:
        for key, value in a[name].items():
            assert torch.equal(value, b[name][key]), f"{name}.{key} differs after resume"


def round_trip(tiny_config, root, tmp_path, capsys, networks, stage="train", first_stage=None):
    """Train 2 epochs straight and 1 + resume 1 (bit-equal weights), then animate and reconstruct
    with the result. ``stage='train_avd'`` trains the second stage on top of ``first_stage`` (a
    checkpoint). Returns the final checkpoint's path."""
    name = Path(tiny_config).stem
    extra = ["--checkpoint", first_stage] if first_stage else []
    config = write_config(tmp_path / f"{name}.yaml", tiny_config, root, num_epochs=2, num_repeats=1)
    one = write_config(tmp_path / f"{name}-1.yaml", tiny_config, root, num_epochs=1, num_repeats=1)
    prefix = "" if stage == "train" else "avd-"

    def train(cfg, log_dir, *more):
        code, err = run_main(capsys, "--config", cfg, "--mode", stage, "--log_dir", log_dir, "--cpu", "--seed", 3,
                             *more)
        assert code == 0, err
        if first_stage:
            return Path(first_stage).parent
        (folder,) = Path(log_dir).iterdir()
        return folder

    if first_stage:  # the second stage writes beside the first: run it in copies of that folder
        import shutil

        first = Path(first_stage)
        copies = []
        for label in ("straight", "halves"):
            shutil.copytree(first.parent, tmp_path / label)
            copies.append(tmp_path / label / first.name)
        straight_dir = train(config, tmp_path / "unused", "--checkpoint", copies[0]) and copies[0].parent
        half_dir = train(one, tmp_path / "unused", "--checkpoint", copies[1]) and copies[1].parent
        extra = []
    else:
        straight_dir = train(config, tmp_path / "straight")
        half_dir = train(one, tmp_path / "halves")
    final_path = straight_dir / f"{prefix}00000001-checkpoint.pth.tar"
    final = ckpt.read_checkpoint(str(final_path))
    code, err = run_main(capsys, "--config", config, "--mode", stage, "--cpu",
                         "--checkpoint", half_dir / f"{prefix}00000000-checkpoint.pth.tar", *extra)
    assert code == 0, err
    resumed = ckpt.read_checkpoint(str(half_dir / f"{prefix}00000001-checkpoint.pth.tar"))
    assert_same_weights(final, resumed, networks)
    assert (straight_dir / "train-vis" / "00000001-rec.png").is_file()

    out = tmp_path / "animation"
    code, err = run_main(capsys, "--config", config, "--mode", "animate", "--checkpoint", final_path, "--cpu",
                         "--out", out)
    assert code == 0, err
    pair = f"{TEST_CLIP}-{TARGET}"
    assert [f.name for f in sorted((out / pair).glob("*.png"))] == ["img1.png", "img2.png", "img3.png"]
    assert (out / f"{pair}.mp4").is_file() and (out / "png" / f"{pair}.png").is_file()

    recon = tmp_path / "reconstruction"
    code, err = run_main(capsys, "--config", config, "--mode", "reconstruction", "--checkpoint", final_path,
                         "--cpu", "--out", recon, "--no_eval")
    assert code == 0, err
    assert len(list((recon / TEST_CLIP).glob("*.png"))) == 3
    return final_path
