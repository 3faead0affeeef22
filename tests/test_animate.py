"""animate.py / inference.py with a tiny random checkpoint on a test split of real faces: the output
files, batching, the motion-transfer plumbing on analytic cases, gray output, refusal to overwrite."""
import argparse
import copy

import numpy as np
import pytest
import torch
from PIL import Image

import animate
import session
from errors import InputError
import evaluate
import inference
import reconstruction
from animation_helpers import (CLIP, CLIP_FRAMES, TARGETS, args, build_test_split, frame_names, landmarker, pixels,
                               tiny_checkpoint, tiny_config)
from checkpoint import CheckpointError
from modules.geometry import make_coordinate_grid
from video_io import video_info


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return build_test_split(tmp_path_factory.getbasetemp() / "animation_split")


@pytest.fixture(scope="module")
def marks():
    return landmarker()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.getbasetemp() / "tiny_checkpoint")


@pytest.fixture(scope="module")
def animated(split, checkpoint, marks, tmp_path_factory):
    """One animate run (batch 5: 12 frames = 5 + 5 + 2) shared by the output tests."""
    out = tmp_path_factory.mktemp("animation")
    results = animate.animate_dataset(tiny_config(split, batch_frames=5), str(checkpoint), out_dir=str(out),
                                      log=lambda _: None, landmarker=marks)
    return out, results


@pytest.fixture(scope="module")
def networks(checkpoint):
    config = tiny_config("unused")
    kp_detector, generator, _ = inference.load_animation_networks(config, str(checkpoint), "cpu")
    return kp_detector, generator


def _frames(split, count=CLIP_FRAMES):
    folder = split / "test" / CLIP
    return np.stack([np.asarray(Image.open(folder / n).convert("RGB").resize((64, 64), Image.Resampling.LANCZOS))
                     for n in frame_names(folder)[:count]])


def test_outputs_per_pair(split, animated):
    out, results = animated
    assert [r["pair"] for r in results] == [f"{CLIP}-{t}" for t in TARGETS]
    driving_names = frame_names(split / "test" / CLIP)
    assert driving_names[:3] == ["img8.png", "img9.png", "img10.png"]   # natural order kept
    for result in results:
        paths = result["outputs"]
        assert result["frames"] == CLIP_FRAMES
        assert frame_names(paths["frames"]) == driving_names
        assert pixels(out / result["pair"] / "img10.png").shape == (64, 64, 3)
        for key, size in (("mp4", (64, 64)), ("gif", (64, 64)), ("side_by_side", (192, 64))):
            info = video_info(paths[key])
            assert info == {"fps": 25.0, "frames": CLIP_FRAMES, "size": size}, key
        strip = pixels(paths["strip"])
        assert strip.shape == (128, 64 * CLIP_FRAMES, 3)   # driving row over generated row
        assert np.array_equal(strip[64:, 64 * 2:64 * 3], pixels(out / result["pair"] / "img10.png"))
        assert not list(out.glob(".tmp-*")) and not list((out / "png").glob(".tmp-*"))


def test_rerun_keeps_finished_pairs(split, checkpoint, animated, marks):
    # Issue 18: a re-run skips finished pairs (it used to refuse); nothing finished is replaced.
    out, _ = animated
    before = (out / f"{CLIP}-obama" / "img8.png").stat().st_mtime_ns
    results = animate.animate_dataset(tiny_config(split), str(checkpoint), out_dir=str(out), log=lambda _: None,
                                      landmarker=marks)
    assert [r["status"] for r in results] == ["done"] * len(TARGETS)
    assert (out / f"{CLIP}-obama" / "img8.png").stat().st_mtime_ns == before


def test_overwrite_and_default_folder_beside_the_checkpoint(split, checkpoint, tmp_path):
    ckpt = tmp_path / "run" / checkpoint.name
    ckpt.parent.mkdir()
    ckpt.write_bytes(checkpoint.read_bytes())
    config = tiny_config(split, fps=12.5, strip_frames=4, format=".gif")
    parser = argparse.ArgumentParser()
    animate.add_cli_arguments(parser)
    reconstruction.add_cli_arguments(parser)          # run.py's one parser takes both without conflict
    options = parser.parse_args(["--num_pairs", "1", "--batch_frames", "3"])
    options.device, options.checkpoint = "cpu", str(ckpt)
    first = animate.run(config, options)
    options.overwrite = True
    second = animate.run(config, options)
    assert len(first) == len(second) == 1
    outputs = second[0]["outputs"]
    assert outputs["frames"] == str(tmp_path / "run" / "animation" / f"{CLIP}-obama")
    assert video_info(outputs["mp4"])["fps"] == 12.5
    assert outputs["side_by_side"].endswith(".gif") and video_info(outputs["side_by_side"])["frames"] == CLIP_FRAMES
    assert pixels(outputs["strip"]).shape == (128, 4 * 64, 3)


def test_batched_equals_per_frame_and_the_published_forward(split, networks):
    kp_detector, generator = networks
    frames = _frames(split, 7)
    prior = np.tile(np.array([[20.0, 20.0]], np.float32), (18, 1)) + np.random.default_rng(0).uniform(0, 24, (18, 2))
    animator = inference.Animator(kp_detector, generator, "cpu", batch_frames=7)
    source = animator.encode_source(frames[0], prior)
    kp_initial = inference.reference_keypoints(animator, frames[0], prior)
    norm = inference.Normalization(adapt_movement_scale=True)
    x = animator.to_device(frames)
    priors = np.repeat(prior[None], 7, axis=0)
    batched = animator.drive(source, x, priors, kp_initial, norm)
    single = torch.cat([animator.drive(source, x[i:i + 1], priors[i:i + 1], kp_initial, norm) for i in range(7)])
    assert torch.allclose(batched, single, atol=1e-5)
    # The published loop: whole generator per frame, source re-encoded, keypoints through normalize_kp.
    from modules.motion_transfer import normalize_kp

    with torch.no_grad():
        p = torch.from_numpy(priors)
        kp_source = kp_detector(x[:1], p[:1])
        kp_init = kp_detector(x[:1], p[:1])
        for i in (0, 3, 6):
            kp_norm = normalize_kp(kp_source, kp_detector(x[i:i + 1], p[i:i + 1]), kp_init, True, True, True)
            published = generator(x[:1], kp_driving=kp_norm, kp_source=kp_source)["prediction"]
            assert torch.allclose(published, batched[i:i + 1], atol=1e-5)


def test_streaming_matches_batched_drive_for_any_batch_size(split, networks):
    kp_detector, generator = networks
    frames = _frames(split, 5)
    prior = np.full((18, 2), 32.0, np.float32) + np.random.default_rng(1).uniform(-12, 12, (18, 2)).astype(np.float32)
    outputs = []
    for batch in (1, 2, 5):
        animator = inference.Animator(kp_detector, generator, "cpu", batch_frames=batch)
        source = animator.encode_source(frames[0], prior)
        kp_initial = inference.reference_keypoints(animator, frames[0], prior)
        driving = ((str(i), f, prior) for i, f in enumerate(frames))
        outputs.append(np.stack([g for _, _, g in inference.animate_frames(
            animator, source, driving, kp_initial, inference.Normalization())]))
    # uint8 after rounding: float differences of 1e-6 may flip a rounding, never by more than 1.
    assert np.abs(outputs[0].astype(int) - outputs[1]).max() <= 1
    assert np.abs(outputs[0].astype(int) - outputs[2]).max() <= 1


def test_identity_motion_reproduces_the_target(split, networks):
    """Driving = the target itself with its own prior: relative keypoints equal the source keypoints,
    every sparse motion is the identity, so the deformation is the identity grid and the deformed
    source is the source."""
    kp_detector, generator = networks
    target = _frames(split, 1)[0]
    prior = np.random.default_rng(2).uniform(8, 56, (18, 2)).astype(np.float32)
    animator = inference.Animator(kp_detector, generator, "cpu")
    source = animator.encode_source(target, prior)
    x = animator.to_device(np.repeat(target[None], 3, axis=0))
    kp_driving = animator.keypoints(x, np.repeat(prior[None], 3, axis=0))
    from modules.motion_transfer import normalize_kp

    for adapt in (False, True):
        kp_norm = normalize_kp(source.kp, kp_driving, kp_driving, adapt, True, True)
        assert torch.allclose(kp_norm["value"], source.kp["value"].expand(3, -1, -1), atol=1e-6)
        assert torch.allclose(kp_norm["jacobian"], source.kp["jacobian"].expand(3, -1, -1, -1), atol=1e-5)
    with torch.no_grad():
        out = generator.decode(source.image, source.features, kp_norm, source.kp)
    grid = make_coordinate_grid(out["deformation"].shape[1:3], dtype=torch.float32)
    assert torch.allclose(out["deformation"], grid.expand_as(out["deformation"]), atol=1e-5)
    # FOMM's coordinate grid is linspace(-1, 1) read by grid_sample with align_corners=False, so the
    # identity deformation resamples the source with a sub-pixel zoom (as published), not bit-exactly:
    # the deformed source is the source warped by the identity grid and nothing else.
    identity_warp = generator.deform_input(source.image, grid[None])
    assert torch.allclose(out["deformed"], identity_warp.expand(3, -1, -1, -1), atol=1e-5)
    relative = animator.drive(source, x, np.repeat(prior[None], 3, axis=0),
                              inference.reference_keypoints(animator, target, prior), inference.Normalization())
    absolute = animator.drive(source, x, np.repeat(prior[None], 3, axis=0), None, inference.ABSOLUTE)
    assert torch.allclose(relative, absolute, atol=1e-5)   # same keypoints either way


def test_relative_motion_moves_the_target_by_the_drivers_displacement(networks):
    kp_detector, generator = networks
    animator = inference.Animator(kp_detector, generator, "cpu")
    frame = np.full((64, 64, 3), 128, np.uint8)
    prior_source = np.random.default_rng(3).uniform(16, 48, (18, 2)).astype(np.float32)
    prior_initial = np.random.default_rng(4).uniform(16, 48, (18, 2)).astype(np.float32)
    moved = prior_initial + np.float32(3.2)   # driver's face moves 3.2 px = 0.1 in normalised units
    source = animator.encode_source(frame, prior_source)
    kp_initial = inference.reference_keypoints(animator, frame, prior_initial)
    kp_driving = animator.keypoints(animator.to_device(frame[None]), moved[None])
    from modules.motion_transfer import normalize_kp

    kp_norm = normalize_kp(source.kp, kp_driving, kp_initial, False, True, True)
    assert torch.allclose(kp_norm["value"] - source.kp["value"], torch.tensor(0.1), atol=1e-6)


def test_bf16_is_close_to_fp32(split, checkpoint):
    config = tiny_config("unused")
    frames = _frames(split, 4)
    prior = np.random.default_rng(5).uniform(12, 52, (18, 2)).astype(np.float32)
    results = {}
    for precision in ("fp32", "bf16"):
        kp_detector, generator, _ = inference.load_animation_networks(config, str(checkpoint), "cpu")
        animator = inference.Animator(kp_detector, generator, "cpu", precision=precision, batch_frames=4)
        source = animator.encode_source(frames[0], prior)
        kp_initial = inference.reference_keypoints(animator, frames[0], prior)
        results[precision] = animator.drive(source, animator.to_device(frames), np.repeat(prior[None], 4, 0),
                                            kp_initial, inference.Normalization())
    assert results["bf16"].dtype == torch.float32
    assert (results["bf16"] - results["fp32"]).abs().mean() < 2 / 255


def test_reference_fixture_through_the_fast_path(reference):
    """fp32 animate path (source encoded once, decode) on the recorded checkpoint reproduces the
    published generator output for source driven by driving (absolute keypoints)."""
    from configuration import build_networks
    from checkpoint import load_networks

    kp_detector, generator, _ = build_networks(reference["model_params"])
    load_networks(reference["checkpoint"], {"kp_detector": kp_detector, "generator": generator})
    kp_detector.eval(), generator.eval()
    animator = inference.Animator(kp_detector, generator, "cpu")
    source_image = reference["source_image"].permute(2, 0, 1)[None]
    driving_image = reference["driving_image"].permute(2, 0, 1)[None]
    kp_source = animator.keypoints(source_image, reference["prior_kp_source"][None])
    with torch.inference_mode():
        features = generator.encode_source(source_image)
    source = inference.Source(source_image, features, kp_source)
    out = animator.drive(source, driving_image, reference["prior_kp_driving"][None].numpy())
    assert torch.allclose(out, reference["eval"]["generator"]["prediction"], atol=1e-5)


def test_gray_checkpoint_gives_gray_output(split, tmp_path, marks):
    gray_ckpt = tiny_checkpoint(tmp_path / "gray", seed=1, gray=True)
    results = animate.animate_dataset(tiny_config(split), str(gray_ckpt), num_pairs=1, log=lambda _: None, landmarker=marks)
    frame = pixels(f"{results[0]['outputs']['frames']}/img8.png").astype(int)
    assert np.abs(frame[..., 0] - frame[..., 1]).max() <= 1 and np.abs(frame[..., 1] - frame[..., 2]).max() <= 1
    color = animate.animate_dataset(tiny_config(split, grayscale="color"), str(gray_ckpt), num_pairs=1,
                                    out_dir=str(tmp_path / "color"), log=lambda _: None, landmarker=marks)
    frame = pixels(f"{color[0]['outputs']['frames']}/img8.png").astype(int)
    assert np.abs(frame[..., 0] - frame[..., 2]).max() > 1


def test_decide_gray():
    gray = np.full((4, 4, 3), 90, np.uint8)
    color = gray.copy()
    color[..., 0] = 200
    assert session.decide_gray("auto", 3, {}, gray, gray)
    assert not session.decide_gray("auto", 3, {}, color, gray)
    assert session.decide_gray("auto", 1, {}, color, color)
    assert session.decide_gray("auto", 3, {"grayscale": True}, color, color)
    assert session.decide_gray("gray", 3, {}, color, color) and not session.decide_gray("color", 3, {}, gray, gray)


def test_keypoint_files_are_used_when_present(split, checkpoint, tmp_path, marks):
    """kpmaker's files and dlib on the spot give the same priors, hence the same frames."""
    import shutil

    import kpmaker

    root = tmp_path / "data"
    shutil.copytree(split, root)
    shutil.copy(split.parent / "pairs.csv", tmp_path / "pairs.csv")
    kpmaker.main(["--root", str(root)])
    assert (root / "keypoints" / f"{CLIP}.npz").is_file()
    with_files = animate.animate_dataset(tiny_config(root), str(checkpoint), num_pairs=1,
                                         out_dir=str(tmp_path / "a"), log=lambda _: None, landmarker=marks)
    shutil.rmtree(root / "keypoints")
    measured = animate.animate_dataset(tiny_config(root), str(checkpoint), num_pairs=1,
                                       out_dir=str(tmp_path / "b"), log=lambda _: None, landmarker=marks)
    for name in frame_names(split / "test" / CLIP)[:3]:
        a = pixels(f"{with_files[0]['outputs']['frames']}/{name}").astype(int)
        b = pixels(f"{measured[0]['outputs']['frames']}/{name}").astype(int)
        assert np.abs(a - b).max() <= 1
    # Reconstruction takes the clip's first frame as the target: its prior comes from the clip's file.
    kpmaker.main(["--root", str(root)])
    results, _ = reconstruction.reconstruct_dataset(tiny_config(root), str(checkpoint), out_dir=str(tmp_path / "r"),
                                                    evaluate=False, log=lambda _: None, landmarker=marks)
    assert [r["clip"] for r in results] == [CLIP]
    assert frame_names(tmp_path / "r" / CLIP) == frame_names(split / "test" / CLIP)


def test_bad_inputs_give_clear_errors(split, checkpoint, tmp_path):
    config = tiny_config(split)
    broken = copy.deepcopy(config)
    broken["dataset_params"]["pairs_list"] = str(tmp_path / "pairs.csv")
    (tmp_path / "pairs.csv").write_text("distance,source,driving,frame\n0,nobody,Positive_smile,0\n")
    with pytest.raises(InputError, match="nobody"):
        animate.animate_dataset(broken, str(checkpoint), out_dir=str(tmp_path / "x"))
    with pytest.raises(CheckpointError, match="not found"):
        animate.animate_dataset(config, str(tmp_path / "missing.pth.tar"), out_dir=str(tmp_path / "y"))
    wrong = tiny_config(split)
    wrong["model_params"]["generator_params"]["block_expansion"] = 16
    with pytest.raises(CheckpointError, match="does not fit"):
        animate.animate_dataset(wrong, str(checkpoint), out_dir=str(tmp_path / "z"))
    with pytest.raises(inference.AnimationError, match="--checkpoint"):
        animate.run(config, args())
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()


def test_reconstruction_writes_frames_video_and_scores(split, checkpoint, tmp_path, marks):
    rows, summary = reconstruction.reconstruct_dataset(tiny_config(split), str(checkpoint), out_dir=str(tmp_path),
                                                       log=lambda _: None, landmarker=marks,
                                                       measurer=evaluate.FaceMeasurer(marks))
    assert [r["clip"] for r in rows] == [CLIP]            # one-image folders are target faces, not clips
    assert frame_names(tmp_path / CLIP) == frame_names(split / "test" / CLIP)
    assert video_info(str(tmp_path / f"{CLIP}.mp4"))["frames"] == CLIP_FRAMES
    assert rows[0]["frames"] == CLIP_FRAMES and 0 < summary["l1"] < 1 and summary["mkr"] is not None
    assert (tmp_path / "reconstruction_metrics.csv").is_file() and (tmp_path / "reconstruction_metrics.json").is_file()
    before = (tmp_path / CLIP / "img8.png").stat().st_mtime_ns     # a re-run keeps finished clips (issue 18)
    again, _ = reconstruction.reconstruct_dataset(tiny_config(split), str(checkpoint), out_dir=str(tmp_path),
                                                  evaluate=False, log=lambda _: None)
    assert again[0]["status"] == "done" and (tmp_path / CLIP / "img8.png").stat().st_mtime_ns == before


def test_through_run_py(split, checkpoint, tmp_path, capsys, caplog):
    """run.py --mode animate / reconstruction dispatch to these modules; bad input is one line, exit 2."""
    import yaml

    import run

    config = tiny_config(split)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    common = ["--config", str(path), "--checkpoint", str(checkpoint), "--cpu"]
    assert run.main(common + ["--mode", "animate", "--out", str(tmp_path / "a"), "--num_pairs", "1",
                              "--precision", "bf16", "--batch_frames", "4"]) == 0
    assert len(frame_names(tmp_path / "a" / f"{CLIP}-obama")) == CLIP_FRAMES
    assert run.main(common + ["--mode", "reconstruction", "--out", str(tmp_path / "r"), "--no_eval"]) == 0
    assert len(frame_names(tmp_path / "r" / CLIP)) == CLIP_FRAMES
    capsys.readouterr()
    # A re-run keeps the finished pair (issue 18: it used to refuse); bad input is one line, exit 2.
    assert run.main(common + ["--mode", "animate", "--out", str(tmp_path / "a"), "--num_pairs", "1"]) == 0
    assert "finished earlier, kept" in caplog.text
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        run.main(common + ["--mode", "animate", "--out", str(tmp_path / "a"), "--num_pairs", "0"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--num_pairs" in err and "at least 1" in err and err.count("\n") == 1


def test_learned_keypoints_baseline_needs_no_prior(split, tmp_path):
    """The vanilla FOMM baseline (learned keypoints) animates without any facial prior or dlib."""
    from configuration import build_networks

    config = tiny_config(split)
    config["model_params"]["common_params"].update(num_kp=10, keypoint_mode="learned")
    torch.manual_seed(3)
    kp_detector, generator, discriminator = build_networks(config["model_params"])
    assert kp_detector.mode == "learned"
    path = tmp_path / "fomm.pth.tar"
    torch.save({"kp_detector": kp_detector.state_dict(), "generator": generator.state_dict(),
                "discriminator": discriminator.state_dict()}, path)

    class NoDlib:
        def __call__(self):
            raise AssertionError("dlib must not be needed for learned keypoints")

    results = animate.animate_dataset(config, str(path), out_dir=str(tmp_path / "out"), num_pairs=1,
                                      log=lambda _: None, landmarker=NoDlib())
    assert results[0]["frames"] == CLIP_FRAMES


@pytest.mark.slow
def test_compiled_path_matches_eager(split, networks):
    """--compile: one graph for every batch (the last one padded), same frames as eager."""
    kp_detector, generator = networks
    frames = _frames(split, 5)
    prior = np.random.default_rng(6).uniform(12, 52, (18, 2)).astype(np.float32)
    outputs = []
    for compiled in (False, True):
        animator = inference.Animator(kp_detector, generator, "cpu", compile=compiled, batch_frames=3)
        source = animator.encode_source(frames[0], prior)
        kp_initial = inference.reference_keypoints(animator, frames[0], prior)
        driving = ((str(i), f, prior) for i, f in enumerate(frames))
        outputs.append(np.stack([g for _, _, g in inference.animate_frames(
            animator, source, driving, kp_initial, inference.Normalization())]))
    assert outputs[1].shape == (5, 64, 64, 3)
    assert np.abs(outputs[0].astype(int) - outputs[1]).max() <= 1
