"""GANimation / ULME-GAN on the registry (modules/ganimation/method.py, training.py, driver.py): configs,
the AU dataset, training through run.py (exact resume), and animation through run.py with every
ULME-GAN option on AU tables whose answers are worked out by hand."""
import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import au_format
import checkpoint as ckpt
import methods
from configuration import ConfigError, load_config, validate_config
from inference import tensor_to_frames
from modules.ganimation import driver as gan_driver
from modules.ganimation.driver import (GanimationDriver, SequenceOptions, SplitFirstConv, driving_sequence,
                                       original_forward)
from modules.ganimation.training import AUDataError, AUFrames, to_network_image
from tests.method_helpers import TARGET, TEST_CLIP, faces, round_trip, run_main, write_config  # noqa: F401
from tests.train_helpers import ROOT

TINY = {"ulme-gan": "config/tiny_ulme_gan.yaml", "ganimation": "config/tiny_ganimation.yaml"}
PUBLISHED = {"ulme-gan": "config/ulme_gan.yaml", "ganimation": "config/ganimation.yaml"}
A = len(au_format.AU_NAMES)

# The driving clip's AUs (3 frames). AU01 present in 2/3 frames (kept), AU02 in 1/3 (zeroed by re-encoding),
# AU04 in 2/3 (kept). Raw intensity sums 3.5, 6, 5.5 (apex frame 1); re-encoded 1.5, 3, 4.5 (apex frame 2).
CLIP_R = np.zeros((3, A))
CLIP_R[:, 0], CLIP_R[:, 1], CLIP_R[:, 2] = [1, 2, 4], [2, 3, 1], [0.5, 1, 0.5]
CLIP_C = np.zeros((3, A))
CLIP_C[:, 0], CLIP_C[:, 1], CLIP_C[:, 2] = [1, 1, 0], [0, 1, 0], [1, 1, 0]
RECODED = CLIP_R * np.isin(np.arange(A), (0, 2))
TEMPLATE_R = np.zeros(A)
TEMPLATE_R[5] = 2.0          # AU07 on the target face


def table(frames, intensity, presence=None, found=None):
    intensity = np.asarray(intensity, np.float32)
    presence = (intensity >= 2.5).astype(np.float32) if presence is None else presence
    found = np.ones(len(frames), bool) if found is None else np.asarray(found, bool)
    return au_format.make_table(frames, intensity, presence, found)


def write_au_tables(root):
    """AU tables for the faces dataset: train clips (varied AUs), the test clip (CLIP_R/CLIP_C), the target."""
    root = Path(root)
    rng = np.random.default_rng(0)
    for clip in sorted((root / "train").iterdir()):
        names = sorted(p.name for p in clip.glob("*.png"))
        au_format.write_aus(au_format.au_path(root / "aus", clip.name),
                            table(names, rng.uniform(0, 5, (len(names), A))))
    au_format.write_aus(au_format.au_path(root / "aus", TEST_CLIP),
                        table([f"img{t + 1}.png" for t in range(3)], CLIP_R, CLIP_C))
    au_format.write_aus(au_format.au_path(root / "aus", TARGET), table(["img1.png"], TEMPLATE_R[None]))
    return root


@pytest.fixture(scope="module")
def au_faces(faces):
    return write_au_tables(faces)


@pytest.fixture(scope="module")
def trained(au_faces, tmp_path_factory):
    """A tiny ULME-GAN trained 2 epochs, resumed exactly, animated and reconstructed through run.py."""
    capsys = _Capture()
    return round_trip(TINY["ulme-gan"], au_faces, tmp_path_factory.mktemp("ulme"), capsys, ("gen", "dis"))


class _Capture:
    """round_trip reads stderr through capsys; a module fixture cannot take capsys, so errors print."""

    def readouterr(self):
        return type("Out", (), {"err": ""})()


# ------------------------------------------------------------------------------------------------ configs

@pytest.mark.parametrize("method", sorted(PUBLISHED))
def test_shipped_configs_load_with_the_published_values(method):
    config = load_config(ROOT / PUBLISHED[method])
    train, model = config["train_params"], config["model_params"]
    assert config["model_params"]["method"] == method
    assert (model["image_size"], model["ngf"], model["ndf"], model["n_blocks"], model["n_layers"]) == (128, 64, 64, 6, 6)
    assert (train["lr"], train["beta1"], train["beta2"], train["batch_size"], train["train_gen_iter"]) == \
        (1e-4, 0.5, 0.999, 25, 5)
    assert (train["niter"], train["niter_decay"], train["num_epochs"], train["lambda_wgan_gp"]) == (20, 10, 30, 10)
    lambdas = (train["lambda_aus"], train["lambda_rec"], train["lambda_mask"], train["lambda_tv"])
    assert lambdas == ((160, 10, 0, 0) if method == "ulme-gan" else (160, 10, 0.1, 1e-5))
    assert config["dataset_params"]["au_dir"] is None
    tiny = load_config(ROOT / TINY[method])
    assert tiny["model_params"]["method"] == method and tiny["model_params"]["image_size"] == 64


def test_bad_values_are_one_line():
    raw = yaml.safe_load((ROOT / TINY["ulme-gan"]).read_text())
    bad = copy.deepcopy(raw)
    bad["animate_params"]["fitting"] = "cubic"
    with pytest.raises(ConfigError, match="'animate_params.fitting' must be one of linear_fitting"):
        validate_config(bad)
    bad = copy.deepcopy(raw)
    bad["train_params"]["lr"] = 0
    with pytest.raises(ConfigError, match="'train_params.lr' must be greater than 0"):
        validate_config(bad)
    bad = copy.deepcopy(raw)
    bad["model_params"]["image_size"] = 48
    with pytest.raises(ConfigError, match="image_size' 48 must be divisible"):
        validate_config(bad)
    bad = copy.deepcopy(raw)
    bad["dataset_params"]["augmentation_params"]["rotation_param"] = {"degrees": 10}
    with pytest.raises(ConfigError, match="rotation_param not supported by ulme-gan"):
        validate_config(bad)


def test_networks_are_named_as_the_original_checkpoints():
    networks = methods.build_networks(load_config(ROOT / PUBLISHED["ulme-gan"])["model_params"])
    assert set(networks) == {"gen", "dis"}
    assert networks["gen"].model[0].weight.shape == (64, 20, 7, 7)
    assert "aus_top.weight" in networks["dis"].state_dict()


# ------------------------------------------------------------------------------------------------ data

def test_dataset_samples_every_measured_frame_with_seeded_targets(au_faces, tmp_path):
    from data_order import SeededSamples

    config = load_config(write_config(tmp_path / "c.yaml", TINY["ulme-gan"], au_faces))
    dataset = methods.get("ulme-gan").build_dataset(config, is_train=True, validate=True)
    assert len(dataset) == 8                                     # 2 clips × 4 frames
    item = dataset[0]
    assert item["source"].shape == (3, 64, 64) and -1 <= item["source"].min() and item["source"].max() <= 1
    clip0 = au_format.read_aus(au_faces / "aus" / "Positive_clip0.csv")
    np.testing.assert_allclose(item["source_aus"].numpy(), clip0.intensity[0] / 5, rtol=0, atol=1e-7)
    # The target is some training frame's AUs plus noise of at most 0.1.
    distance = (dataset.aus - item["target_aus"].numpy()[None]).__abs__().max(axis=1)
    assert distance.min() <= 0.1 + 1e-6
    seeded = SeededSamples(dataset)
    a, b = seeded[(3, 1234)], seeded[(3, 1234)]
    assert torch.equal(a["source"], b["source"]) and torch.equal(a["target_aus"], b["target_aus"])
    flips = {bool(torch.equal(seeded[(0, s)]["source"], dataset[0]["source"].flip(-1))) for s in range(12)}
    assert flips == {True, False} or len(flips) == 1 and not torch.equal(dataset[0]["source"],
                                                                         dataset[0]["source"].flip(-1))


def test_frames_without_a_face_are_left_out_and_missing_tables_named(faces, tmp_path):
    import shutil

    root = tmp_path / "faces"
    shutil.copytree(faces, root)
    write_au_tables(root)
    names = [f"{t:03d}.png" for t in range(4)]
    values = np.full((4, A), 1.0)
    values[1] = np.nan
    au_format.write_aus(root / "aus" / "Positive_clip0.csv",
                        au_format.make_table(names, values, np.zeros((4, A)), [True, False, True, True]))
    with pytest.warns(UserWarning, match="1 training frame"):
        assert len(AUFrames(root, root / "aus", 64)) == 7
    (root / "aus" / "Positive_clip1.csv").unlink()
    with pytest.raises(AUDataError, match="no AU table in .* for 1 clip\\(s\\): Positive_clip1[\\s\\S]*aumaker.py"):
        AUFrames(root, root / "aus", 64)


# ------------------------------------------------------------------------------------------------ AU sequences

def _clip_table(found=None):
    return table([f"img{t + 1}.png" for t in range(3)], CLIP_R, CLIP_C, found)


EXPECTED = {  # options → the hand-worked sequence (0..5 scale)
    "1V1 raw": (SequenceOptions(re_code=False, fitting="1V1"), CLIP_R),
    "1V1 re-encoded ×2": (SequenceOptions(fitting="1V1", factor=2.0), 2 * RECODED),
    # re-encoded apex is frame 2: frame 1 is half-way between frames 0 and 2.
    "linear re-encoded": (SequenceOptions(), np.stack([RECODED[0], (RECODED[0] + RECODED[2]) / 2, RECODED[2]])),
    # raw apex is frame 1: the correct ramp falls to the real last frame, i.e. the clip as it is ...
    "linear raw": (SequenceOptions(re_code=False), CLIP_R),
    # ... the published one falls towards the already-ramped frame 1 with a = (n-i)/(n-t-1) = 1: the apex again.
    "linear raw published": (SequenceOptions(re_code=False, published_linear_fitting=True),
                             np.stack([CLIP_R[0], CLIP_R[1], CLIP_R[1]])),
    "linear top_frame 0": (SequenceOptions(re_code=False, top_frame=0),
                           np.stack([CLIP_R[0], (CLIP_R[0] + CLIP_R[2]) / 2, CLIP_R[2]])),
    # apex only: template → apex (frame 2) → ...
    "apex re-encoded": (SequenceOptions(fitting="apex_frame"),
                        np.stack([TEMPLATE_R, (TEMPLATE_R + RECODED[2]) / 2, RECODED[2]])),
    # raw apex frame 1: falls with a = (n-i)/(n-t) = 1/2 published, to the template with end_at_template.
    "apex raw": (SequenceOptions(re_code=False, fitting="apex_frame"),
                 np.stack([TEMPLATE_R, CLIP_R[1], (CLIP_R[1] + TEMPLATE_R) / 2])),
    "apex raw to template": (SequenceOptions(re_code=False, fitting="apex_frame", end_at_template=True),
                             np.stack([TEMPLATE_R, CLIP_R[1], TEMPLATE_R])),
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_driving_sequences_have_the_hand_worked_values(case):
    options, expected = EXPECTED[case]
    sequence, filled = driving_sequence(_clip_table(), options, lambda: TEMPLATE_R)
    assert sequence.dtype == np.float32 and not filled
    np.testing.assert_allclose(sequence, expected / 5, rtol=0, atol=1e-6)


def test_frames_without_a_face_carry_the_last_measured_aus():
    values = CLIP_R.copy()
    values[[0, 2]] = np.nan
    presence = CLIP_C.copy()
    presence[[0, 2]] = np.nan
    faceless = au_format.make_table(["a.png", "b.png", "c.png"], values, presence, [False, True, False])
    sequence, filled = driving_sequence(faceless, SequenceOptions(re_code=False, fitting="1V1"))
    assert filled == ["a.png", "c.png"]
    np.testing.assert_allclose(sequence, np.repeat(CLIP_R[1:2] / 5, 3, axis=0), atol=1e-7)
    with pytest.raises(gan_driver.AnimationError, match="no frame of the driving clip has measured AUs"):
        driving_sequence(au_format.make_table(["a.png"], np.full((1, A), np.nan), np.full((1, A), np.nan), [False]))


# ------------------------------------------------------------------------------------------------ the driver

def _tiny_driver(config_overrides=None, precision="fp32", batch_frames=3):
    config = load_config(ROOT / PUBLISHED["ulme-gan"])
    config["dataset_params"]["frame_shape"] = [128, 128, 3]
    config["model_params"].update(ngf=8, n_blocks=2)
    torch.manual_seed(0)
    gen = methods.build_networks(config["model_params"])["gen"].eval()
    return GanimationDriver(gen, config, "cpu", precision, batch_frames), gen


def test_split_first_convolution_equals_the_original_forward():
    driver, gen = _tiny_driver()
    rng = np.random.default_rng(1)
    target = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    aus = rng.uniform(-0.1, 1.1, (5, A)).astype(np.float32)
    image = driver.network_image(target)
    first = SplitFirstConv(gen.model[0], image)
    tiled = torch.cat([image.expand(5, -1, -1, -1), torch.from_numpy(aus)[:, :, None, None].expand(-1, -1, 128, 128)], 1)
    with torch.no_grad():
        torch.testing.assert_close(first(torch.from_numpy(aus)), gen.model[0](tiled), rtol=0, atol=1e-5)
        pair = gan_driver.GanimationPair(image, first, aus)
        ours = driver.forward(pair, aus)
    reference = original_forward(gen, image, aus)
    assert (ours - reference).abs().max() <= 1e-5
    bf16, _ = _tiny_driver(precision="bf16")
    bf16.gen = gen
    assert (bf16.forward(pair, aus) - reference).abs().max() <= 0.1


def test_generate_batches_and_resizes_to_the_frame_size():
    driver, gen = _tiny_driver()
    driver.frame_size = (96, 80)
    target = np.random.default_rng(2).integers(0, 256, (96, 80, 3), dtype=np.uint8)
    pair = driver.start(target, table=_clip_table(), clip="clip")
    out = np.concatenate([driver.generate(pair, [None, None]), driver.generate(pair, [None])])
    assert out.shape == (3, 96, 80, 3) and out.dtype == np.uint8
    with pytest.raises(gan_driver.AnimationError, match="more frames than its AU table"):
        driver.generate(pair, [None])


def test_template_aus_measured_on_the_fly_when_the_target_has_no_table(tmp_path):
    driver, _ = _tiny_driver()
    driver.au_dir = tmp_path
    calls = []
    driver.estimator = lambda image: calls.append(image.shape) or (TEMPLATE_R.astype(np.float32), None)
    driver.options = SequenceOptions(fitting="apex_frame")
    target = np.zeros((128, 128, 3), np.uint8)
    driver.start(target, table=_clip_table(), clip="clip", target_name="face")
    driver.start(target, table=_clip_table(), clip="clip", target_name="face")
    assert calls == [(128, 128, 3)]                                   # measured once per target
    driver.estimator = lambda image: None
    with pytest.raises(gan_driver.AnimationError, match="no face measured on the target face"):
        driver.start(target, table=_clip_table(), clip="clip", target_name="other")


# ------------------------------------------------------------------------------------------------ through run.py

def test_tiny_ulme_gan_trains_resumes_exactly_animates_and_reconstructs(trained):
    saved = ckpt.read_checkpoint(str(trained))
    assert {"gen", "dis", "optimizer_gen", "optimizer_dis", "scheduler_gen", "scheduler_dis"} <= set(saved)
    assert saved["train_state"]["iteration"] == 8                    # 2 epochs × 8 frames / batch 2
    log = (trained.parent / "log.txt").read_text()
    assert "gen_fake_aus" in log and "dis_gp" in log


@pytest.mark.slow  # the same path as ULME-GAN's, with the attention losses on (lambda_mask, lambda_tv)
def test_tiny_ganimation_round_trip(au_faces, tmp_path, capsys):
    round_trip(TINY["ganimation"], au_faces, tmp_path, capsys, ("gen", "dis"))


def _expected_frames(checkpoint, config, aus):
    gen = methods.build_networks(config["model_params"])["gen"]
    gen.load_state_dict(ckpt.read_checkpoint(str(checkpoint))["gen"])
    target = np.asarray(Image.open(ROOT / config["dataset_params"]["root_dir"] / "test" / TARGET / "img1.png"))
    image = to_network_image(target, 64)[None]
    return tensor_to_frames((original_forward(gen.eval(), image, torch.from_numpy(aus / 5).float()) + 1) / 2)


@pytest.mark.parametrize("case", ["linear re-encoded", "linear raw published", "apex re-encoded", "1V1 re-encoded ×2"])
def test_animate_through_run_py_follows_the_au_options(case, trained, au_faces, tmp_path, capsys):
    options, expected = EXPECTED[case]
    raw = yaml.safe_load((ROOT / TINY["ulme-gan"]).read_text())
    raw["dataset_params"]["root_dir"] = str(au_faces)
    pairs = tmp_path / "pairs.csv"                                  # the MEGC form: distance,source,driving,frame
    pairs.write_text(f"distance,source,driving,frame\n0,{TARGET},{TEST_CLIP},0\n")
    raw["dataset_params"]["pairs_list"] = str(pairs)
    raw["animate_params"].update({k: getattr(options, k) for k in SequenceOptions.__dataclass_fields__})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, err = run_main(capsys, "--config", path, "--mode", "animate", "--checkpoint", trained, "--cpu",
                         "--out", tmp_path / "out")
    assert code == 0, err
    frames = [np.asarray(Image.open(tmp_path / "out" / f"{TEST_CLIP}-{TARGET}" / f"img{t + 1}.png")) for t in range(3)]
    want = _expected_frames(trained, load_config(path), expected)
    assert np.abs(np.stack(frames).astype(int) - want.astype(int)).max() <= 1


def test_reconstruction_drives_the_first_frame_by_each_frames_own_aus(trained, au_faces, tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", TINY["ulme-gan"], au_faces)
    code, err = run_main(capsys, "--config", config, "--mode", "reconstruction", "--checkpoint", trained, "--cpu",
                         "--out", tmp_path / "rec", "--no_eval")
    assert code == 0, err
    cfg = load_config(config)
    gen = methods.build_networks(cfg["model_params"])["gen"]
    gen.load_state_dict(ckpt.read_checkpoint(str(trained))["gen"])
    first = np.asarray(Image.open(au_faces / "test" / TEST_CLIP / "img1.png"))
    want = tensor_to_frames((original_forward(gen.eval(), to_network_image(first, 64)[None],
                                              torch.from_numpy(CLIP_R / 5).float()) + 1) / 2)
    got = np.stack([np.asarray(Image.open(tmp_path / "rec" / TEST_CLIP / f"img{t + 1}.png")) for t in range(3)])
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_a_clip_without_an_au_table_is_one_line(trained, au_faces, tmp_path, capsys, caplog):
    raw = yaml.safe_load((ROOT / TINY["ulme-gan"]).read_text())
    raw["dataset_params"].update(root_dir=str(au_faces), au_dir=str(tmp_path / "nothing"))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, err = run_main(capsys, "--config", path, "--mode", "animate", "--checkpoint", trained, "--cpu",
                         "--out", tmp_path / "out")
    failed = [r.getMessage() for r in caplog.records if "FAILED" in r.getMessage()]
    assert code != 0 and failed and f"no AU table for driving clip {TEST_CLIP}; run python aumaker.py" in failed[0]
    assert "\n" not in failed[0]


# ------------------------------------------------------------------------------------------------ demo, import, benchmark

def _openface_csv(path, intensity, presence):
    """An OpenFace FeatureExtraction CSV (", "-separated, 1-based frames, AU28_c included)."""
    names = list(au_format.AU_NAMES)
    header = (["frame", "face_id", "timestamp", "confidence", "success"] + [f"{n}_r" for n in names]
              + [f"{n}_c" for n in names[:16]] + ["AU28_c", "AU45_c"])
    lines = [", ".join(header)]
    for t, (r, c) in enumerate(zip(intensity, presence)):
        cells = [t + 1, 0, t * 0.04, 0.98, 1, *r, *c[:16], 0, c[16]]
        lines.append(", ".join(str(float(v)) if i > 4 else str(v) for i, v in enumerate(cells)))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_demo_drives_a_photo_by_an_openface_au_table(trained, au_faces, tmp_path):
    import demo

    config = write_config(tmp_path / "c.yaml", TINY["ulme-gan"], au_faces)
    table_path = _openface_csv(tmp_path / "aus.csv", CLIP_R, CLIP_C)
    result = tmp_path / "out.mp4"
    target = au_faces / "test" / TARGET / "img1.png"
    code = demo.main(["--config", str(config), "--checkpoint", str(trained), "--source_image", str(target),
                      "--driving_aus", str(table_path), "--result_video", str(result), "--cpu"])
    assert code == 0 and result.is_file()
    from video_io import iter_clip

    assert len(list(iter_clip(str(result)))) == 3
    # The same sequence the animate test checks frame by frame (re-encoded, linear fitting).
    from modules.ganimation.driver import read_driving_aus

    sequence, _ = driving_sequence(read_driving_aus(table_path), SequenceOptions())
    np.testing.assert_allclose(sequence, EXPECTED["linear re-encoded"][1] / 5, atol=1e-6)


def test_demo_refuses_driving_aus_for_other_methods_and_a_missing_driving_input(trained, au_faces, tmp_path, capsys):
    import demo

    config = write_config(tmp_path / "c.yaml", TINY["ulme-gan"], au_faces)
    target = au_faces / "test" / TARGET / "img1.png"
    code = demo.main(["--config", str(config), "--checkpoint", str(trained), "--source_image", str(target),
                      "--result_video", str(tmp_path / "o.mp4"), "--cpu"])
    assert code == 2 and "give one of --driving_video" in capsys.readouterr().err
    fomm = write_config(tmp_path / "f.yaml", "config/tiny.yaml", au_faces)
    code = demo.main(["--config", str(fomm), "--checkpoint", str(trained), "--source_image", str(target),
                      "--driving_aus", "x.csv", "--result_video", str(tmp_path / "o.mp4"), "--cpu"])
    assert code == 2 and "--driving_aus drives AU-driven methods" in capsys.readouterr().err


def test_an_original_net_gen_file_imports_and_animates(trained, au_faces, tmp_path, capsys):
    from modules.ganimation import method as spec

    saved = ckpt.read_checkpoint(str(trained))
    torch.save(saved["gen"], tmp_path / "30_net_gen.pth")          # the original's save_ckpt: a plain state dict
    out = tmp_path / "imported.pth.tar"
    assert spec.main([str(tmp_path / "30_net_gen.pth"), "--out", str(out)]) == 0
    imported = ckpt.read_checkpoint(str(out))
    assert set(imported) == {"gen"} and all(torch.equal(imported["gen"][k], v) for k, v in saved["gen"].items())
    config = write_config(tmp_path / "c.yaml", TINY["ulme-gan"], au_faces)
    code, err = run_main(capsys, "--config", config, "--mode", "animate", "--checkpoint", out, "--cpu",
                         "--out", tmp_path / "anim")
    assert code == 0, err
    torch.save({"x": 1}, tmp_path / "bad.pth")
    assert spec.main([str(tmp_path / "bad.pth"), "--out", str(tmp_path / "b.tar")]) == 2
    assert "not a plain state dict" in capsys.readouterr().err


def test_generator_steps_count_within_the_epoch():
    from modules.ganimation.training import GanimationTraining, batches_per_epoch

    assert batches_per_epoch(8, 2) == 4 and batches_per_epoch(9, 4, world_size=2) == 2
    training = GanimationTraining.__new__(GanimationTraining)
    training.params, training.world_size = {"batch_size": 2}, 1
    training.set_steps_per_epoch(batches_per_epoch(14, 2))   # 7 steps per epoch, as the trainer says
    assert [training.step_in_epoch(1, i) for i in (7, 8, 13)] == [0, 1, 6]


def test_benchmark_quick_mode_writes_its_figures(tmp_path):
    from benchmarks import bench_ganimation

    assert bench_ganimation.main(["--quick", "--frames", "4", "--repeats", "1", "--out", str(tmp_path)]) == 0
    result = yaml.safe_load((tmp_path / "bench_ganimation_quick.json").read_text())
    assert set(result["ms_per_frame"]) == {"a", "o", "b", "c"} and result["max_abs_diff_vs_a"]["b"] <= 1e-5
    assert (tmp_path / "bench_ganimation_quick.md").is_file()
