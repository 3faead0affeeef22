"""The TPS family on the registry: TPSMM (config/tiny_tpsmm.yaml), TPSMM-ME (config/tiny_tpsmm_me.yaml)
and TPSRAU (config/tiny_tpsrau.yaml) train, resume exactly, animate and reconstruct through run.py on
real faces; TPSMM's published configs load unchanged; the driver equals the original per-frame
forward; the variants' data (face masks, perspective, landmarks, AU differences)."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import au_format
import configuration
import methods
from tests.method_helpers import TEST_CLIP, faces, round_trip  # noqa: F401 (fixture)
from tests.train_helpers import ROOT

pytestmark = pytest.mark.filterwarnings("ignore::modules.perceptual.VGGWeightsMissing")

TPS_NETWORKS = ("kp_detector", "dense_motion_network", "inpainting_network", "avd_network")


def _config(name, **changes):
    raw = yaml.safe_load((ROOT / "config" / name).read_text())
    for section, values in changes.items():
        raw[section].update(values)
    return configuration.validate_config(raw)


@pytest.mark.parametrize("path", sorted((ROOT / "config" / "tpsmm").glob("*.yaml")), ids=lambda p: p.name)
def test_published_tpsmm_configs_load_unchanged(path):
    config = configuration.load_config(path)
    assert config["model_params"]["method"] == "tpsmm"
    assert config["dataset_params"]["frame_shape"] == [256, 256, 3]    # null → 256×256
    networks = methods.build_networks(config["model_params"])
    assert ("bg_predictor" in networks) == config["model_params"]["common_params"]["bg"]
    assert config["train_avd_params"]["lr"] == 1.0e-3


def test_shipped_variant_configs_load():
    me = configuration.load_config(ROOT / "config" / "tpsmm_me.yaml")
    assert me["model_params"]["method"] == "tpsmm-me" and me["model_params"]["common_params"]["num_kps"] == 8
    assert me["train_params"]["dropout_maxp"] == 0.7 and me["animate_params"]["mode"] == "relative"
    assert me["dataset_params"]["augmentation_params"]["perspective_param"]["p"] == 0.5
    rau = configuration.load_config(ROOT / "config" / "tpsrau.yaml")
    assert rau["model_params"]["method"] == "tpsrau" and rau["model_params"]["common_params"]["au_branch"]


def test_bad_values_are_one_line():
    raw = yaml.safe_load((ROOT / "config" / "tiny_tpsmm.yaml").read_text())
    raw["train_params"]["dropout_maxp"] = 1.5
    with pytest.raises(configuration.ConfigError, match="'train_params.dropout_maxp' must be between 0 and 0.99"):
        configuration.validate_config(raw)
    raw = yaml.safe_load((ROOT / "config" / "tiny_tpsmm.yaml").read_text())
    raw["animate_params"]["mode"] = "absolute"
    with pytest.raises(configuration.ConfigError, match="animate_params.mode"):
        configuration.validate_config(raw)


def test_narrow_resnet_is_torchvisions_resnet18_scaled():
    """At width 64 the narrow builder is torchvision's ResNet-18 exactly (names, shapes, outputs with
    the same weights); at 16 the same layout with 1/16 of the convolution weights."""
    import torch
    from torchvision import models

    from modules.tpsmm.resnet import NarrowResNet18, resnet18

    torch.manual_seed(0)
    reference = models.resnet18(weights=None, num_classes=10).eval()
    narrow = NarrowResNet18(64, 10).eval()
    assert {k: v.shape for k, v in narrow.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    narrow.load_state_dict(reference.state_dict())
    image = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(narrow(image), reference(image))
    assert isinstance(resnet18(10), models.ResNet)   # the published width builds torchvision's own
    small = resnet18(6, in_channels=6, width=16)
    assert set(small.state_dict()) == set(resnet18(6, in_channels=6).state_dict())
    count = lambda net: sum(p.numel() for p in net.parameters())
    assert count(small) / count(resnet18(6, in_channels=6)) == pytest.approx(1 / 16, rel=0.05)
    assert small(torch.rand(1, 6, 64, 64)).shape == (1, 6)


def test_resnet_width_narrows_both_resnets_and_is_validated():
    raw = yaml.safe_load((ROOT / "config" / "tiny_tpsmm.yaml").read_text())
    raw["model_params"]["common_params"].update(bg=True, resnet_width=16)
    networks = methods.build_networks(configuration.validate_config(raw)["model_params"])
    assert networks["kp_detector"].fg_encoder.conv1.out_channels == 16
    assert networks["bg_predictor"].bg_encoder.layer4[0].conv1.out_channels == 128
    raw["model_params"]["common_params"]["resnet_width"] = 2
    with pytest.raises(configuration.ConfigError, match="resnet_width"):
        configuration.validate_config(raw)


# ------------------------------------------------------------------------------------------------
# The driver against the original per-frame loop (demo.py's make_animation).

def _original_frame(nets, source, kp_driving, kp_source, kp_initial, mode):
    from modules.tpsmm.animation import animation_kp

    kp_norm = animation_kp(kp_source, kp_driving, kp_initial, mode, nets["avd_network"])
    dense = nets["dense_motion_network"](source_image=source, kp_driving=kp_norm, kp_source=kp_source,
                                         bg_param=None, dropout_flag=False)
    return nets["inpainting_network"](source, dense)["prediction"]


@pytest.mark.parametrize("mode", ["relative", "standard", "avd"])
def test_driver_equals_the_per_frame_forward(mode):
    """Batched keypoints equal per-frame ones to 1e-6 and, from the same keypoints, the batched
    motion and decoder (target encoded once, channels_last, split narrow convolutions) equal the
    original's per-frame forward to 1e-5. (End to end the TPS fit amplifies a 1e-7 keypoint
    rounding up to ~1e-4 with random weights, whichever way the frames are batched.)"""
    import copy

    from inference import Normalization
    from modules.tpsmm.driver import TpsDriver

    torch.manual_seed(0)
    config = _config("tiny_tpsmm.yaml", animate_params={"mode": mode})
    nets = {k: v.eval() for k, v in methods.build_networks(config["model_params"]).items()}
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    clip = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    to = lambda f: torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    with torch.no_grad():
        kp_source = nets["kp_detector"](to(target))
        kp_initial = nets["kp_detector"](to(clip[0]))
        kp_frames = [nets["kp_detector"](to(f)) for f in clip]
        expected = torch.cat([_original_frame(nets, to(target), kp, kp_source, kp_initial, mode) for kp in kp_frames])
    driver = TpsDriver(copy.deepcopy(nets), config, "cpu", batch_frames=2)
    pair = driver.start(target, clip[0], normalization=Normalization())
    assert (pair.kp_source["fg_kp"] - kp_source["fg_kp"]).abs().max() < 1e-6
    batched = driver.keypoints(driver.to_device(clip))["fg_kp"]
    assert (batched - torch.cat([kp["fg_kp"] for kp in kp_frames])).abs().max() < 1e-6
    pair.kp_source, pair.kp_initial = kp_source, kp_initial
    got = torch.cat([driver.render(pair, {"fg_kp": torch.cat([kp["fg_kp"] for kp in kp_frames[i:i + 2]])})
                     for i in range(0, 5, 2)])
    assert (got - expected).abs().max().item() < 1e-5
    bf16 = TpsDriver(copy.deepcopy(nets), config, "cpu", precision="bf16", batch_frames=4)
    pair = bf16.start(target, clip[0], normalization=Normalization())
    assert (bf16.drive(pair, bf16.to_device(clip)) - expected).abs().mean().item() < 0.05


# ------------------------------------------------------------------------------------------------
# The variants' data.

def test_hull_mask_is_the_landmarks_convex_hull():
    from modules.tpsmm.dataset import hull_masks

    square = torch.tensor([[[2.0, 2.0], [5.0, 2.0], [5.0, 6.0], [2.0, 6.0], [3.0, 3.0]]])
    mask = hull_masks(square, (8, 8))[0, 0]
    expected = torch.zeros(8, 8)
    expected[2:7, 2:6] = 1
    assert torch.equal(mask, expected)
    assert hull_masks(torch.full((1, 5, 2), float("nan")), (4, 4)).eq(1).all()   # no face: whole frame


def test_perspective_moves_frames_and_masks_together():
    from modules.tpsmm.dataset import augment

    frames = torch.zeros(2, 4, 32, 32)
    frames[:, :3, 8:24, 8:24] = 1
    frames[:, 3:, 8:24, 8:24] = 1
    torch.manual_seed(1)
    out, _, _ = augment(frames, None, {}, {"distortion_scale": 0.5, "p": 1.0})
    assert not torch.equal(out, frames)
    assert torch.allclose(out[:, :1], out[:, 3:])      # the mask channel warped exactly as the image


def _with_aus(root):
    """A copy's AU tables for every train clip and the test clip (intensity rising with the frame)."""
    for split in ("train", "test"):
        for clip in sorted((root / split).iterdir()):
            frames = sorted(p.name for p in clip.glob("*.png"))
            if len(frames) < 2:
                continue
            intensity = np.linspace(0, 4, len(frames) * 17, dtype=np.float32).reshape(len(frames), 17)
            table = au_format.make_table(frames, intensity, (intensity > 1).astype(np.float32),
                                         np.ones(len(frames), bool))
            au_format.write_aus(au_format.au_path(root / "aus", clip.name), table)
    return root


def test_tpsrau_samples_carry_first_frame_landmarks_and_au_difference(faces, tmp_path):
    from modules.tpsmm.dataset import build_dataset

    root = _with_aus(Path(shutil.copytree(faces, tmp_path / "faces")))
    config = _config("tiny_tpsrau.yaml", dataset_params={"root_dir": str(root), "augmentation_params": None,
                                                         "au_noise": 0})
    dataset = build_dataset(config, "tpsrau")
    torch.manual_seed(0)
    sample = dataset[0]
    assert sample["source_keypoints"].shape == (50, 2)
    assert torch.equal(sample["source_keypoints"], sample["driving_keypoints"])
    assert sample["au_cond"].shape == (17,) and sample["au_cond"].abs().max() <= 4 / 5


def test_tpsrau_without_au_tables_is_one_line(faces, tmp_path):
    from frames_dataset import DatasetError
    from modules.tpsmm.dataset import build_dataset

    config = _config("tiny_tpsrau.yaml", dataset_params={"root_dir": str(faces)})
    with pytest.raises(DatasetError, match="AU tables.*missing.*aumaker.py"):
        build_dataset(config, "tpsrau")


# ------------------------------------------------------------------------------------------------
# Through run.py.

def test_tpsmm_trains_resumes_animates_reconstructs_and_trains_avd(faces, tmp_path, capsys):
    (tmp_path / "stage1").mkdir()
    first = round_trip("config/tiny_tpsmm.yaml", faces, tmp_path / "stage1", capsys, TPS_NETWORKS + ("bg_predictor",))
    (tmp_path / "avd").mkdir()
    round_trip("config/tiny_tpsmm.yaml", faces, tmp_path / "avd", capsys, ("avd_network",), stage="train_avd",
               first_stage=first)


@pytest.mark.slow
def test_tpsmm_me_round_trip(faces, tmp_path, capsys):
    round_trip("config/tiny_tpsmm_me.yaml", faces, tmp_path, capsys, TPS_NETWORKS)


@pytest.mark.slow
def test_tpsrau_round_trip(faces, tmp_path, capsys):
    root = _with_aus(Path(shutil.copytree(faces, tmp_path / "faces")))
    (tmp_path / "run").mkdir()
    round_trip("config/tiny_tpsrau.yaml", root, tmp_path / "run", capsys, TPS_NETWORKS)


@pytest.mark.slow
def test_benchmark_quick_mode_runs(tmp_path):
    from benchmarks.bench_tpsmm import main

    result = main(["--quick", "--frames", "2", "--repeats", "1", "--out", str(tmp_path)])
    assert set(result["paths"]) == {"a", "b", "c"} and (tmp_path / "bench_tpsmm_quick.md").is_file()
    assert result["paths"]["b"]["max_abs_diff"] < 1e-3 and result["paths"]["b"]["ms_per_frame"] > 0
