"""MRAA (``mraa``) on the registry: the published configs load unchanged, both training stages train,
resume exactly, animate and reconstruct through run.py (config/tiny_mraa.yaml), the driver equals the
original per-frame loop, and bad input is one line."""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import checkpoint as ckpt
import methods
from configuration import ConfigError, load_config, validate_config
from inference import frames_to_tensor
from tests.method_helpers import faces, round_trip, run_main  # noqa: F401 (fixture)
from tests.train_helpers import ROOT

pytestmark = pytest.mark.filterwarnings("ignore::modules.perceptual.VGGWeightsMissing")

TINY = "config/tiny_mraa.yaml"
PUBLISHED = sorted((ROOT / "config" / "mraa").glob("*.yaml"))
NETWORKS = ("region_predictor", "bg_predictor", "generator", "avd_network")


def tiny_raw():
    return yaml.safe_load((ROOT / TINY).read_text())


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda p: p.stem)
def test_published_configs_load_unchanged_as_mraa(path):
    config = load_config(path)
    assert config["model_params"]["method"] == "mraa"
    raw = yaml.safe_load(path.read_text())
    assert config["train_params"]["lr"] == raw["train_params"]["lr"]
    assert config["train_params"]["num_workers"] == raw["train_params"]["dataloader_workers"]
    assert config["train_avd_params"]["epoch_milestones"] == raw["train_avd_params"]["epoch_milestones"]
    assert config["animate_params"]["mode"] == "avd"
    assert config["dataset_params"]["frame_shape"] == [256, 256, 3]  # null: the 256 default
    networks = methods.build_networks(config["model_params"])
    assert set(networks) == set(NETWORKS)
    assert "regions.weight" in networks["region_predictor"].state_dict()


@pytest.mark.parametrize("section, key, value, message", [
    ("train_avd_params", "random_scale", 1.5, "'train_avd_params.random_scale' must be between 0 and 0.99"),
    ("train_avd_params", "batch_size", 1, "'train_avd_params.batch_size' must be at least 2"),
    ("animate_params", "mode", "fancy", "'animate_params.mode' must be one of standard, relative, avd"),
    ("train_params", "lr", -1, "'train_params.lr' must be at least 0"),
])
def test_bad_values_are_one_line(section, key, value, message):
    raw = tiny_raw()
    raw[section][key] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as error:
        validate_config(raw, "tiny_mraa.yaml")
    assert "\n" not in str(error.value) and "tiny_mraa.yaml" in str(error.value)


def test_avd_mode_without_affines_is_refused():
    raw = tiny_raw()
    raw["model_params"]["estimate_affine"] = False
    raw["model_params"]["region_predictor_params"]["pca_based"] = False
    raw["model_params"]["generator_params"]["pixelwise_flow_predictor_params"]["use_covar_heatmap"] = False
    validate_config(copy.deepcopy(raw))
    raw["animate_params"]["mode"] = "avd"
    with pytest.raises(ConfigError, match="mode' avd needs region affines"):
        validate_config(raw)


# ------------------------------------------------------------------------------------------------
# The driver against the original per-frame loop (benchmarks/bench_mraa.py's, rebuilt from our modules).

@pytest.fixture(scope="module")
def tiny_networks():
    from benchmarks.bench_mraa import random_mraa_networks

    config = validate_config(tiny_raw())
    # Random weights: some seeds give the AVD near-singular affines, whose inverse makes even the
    # original's own fp32 loop differ from float64 by 1e-4; seed 0 does not (checked for every mode).
    return config, random_mraa_networks(config["model_params"], seed=0)


def _clip(n=5):
    """A real face clip (5 frames, 64×64) and another face as the target."""
    from tests.train_helpers import face_clip

    return face_clip(1, n, 64)[0], face_clip(2, 1, 64)[0][0]


@pytest.mark.parametrize("mode", ["standard", "relative", "avd", "reconstruction"])
def test_driver_equals_the_original_per_frame_loop(tiny_networks, mode):
    from benchmarks.bench_mraa import original_loop
    from modules.mraa.driver import MraaDriver

    config, networks = tiny_networks
    config = copy.deepcopy(config)
    config["animate_params"]["mode"] = "standard" if mode == "reconstruction" else mode
    frames, target = _clip()
    if mode == "reconstruction":
        target = frames[0]
    expected = original_loop(networks, frames_to_tensor(target[None]), frames_to_tensor(frames),
                             config["animate_params"]["mode"], reconstruction=mode == "reconstruction")
    driver = MraaDriver(copy.deepcopy(networks), config, "cpu", "fp32", batch_frames=3)
    name = "clip" if mode == "reconstruction" else "target"
    pair = driver.start(target, frames[0], clip="clip", target_name=name)
    got = torch.cat([driver.drive(pair, driver.to_device(frames[i:i + 3])) for i in range(0, len(frames), 3)])
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got - expected).abs().max()


def test_bf16_driver_runs_and_stays_close(tiny_networks):
    from modules.mraa.driver import MraaDriver

    config, networks = tiny_networks
    frames, target = _clip()
    outputs = {}
    for precision in ("fp32", "bf16"):
        driver = MraaDriver(copy.deepcopy(networks), config, "cpu", precision, batch_frames=4)
        pair = driver.start(target, frames[0], clip="clip", target_name="target")
        outputs[precision] = driver.generate(pair, frames).astype(np.int16)
    assert outputs["bf16"].shape == (5, 64, 64, 3)
    assert np.abs(outputs["bf16"] - outputs["fp32"]).mean() < 4


def test_benchmark_quick_mode_writes_its_figures(tmp_path):
    from benchmarks import bench_mraa

    assert bench_mraa.main(["--quick", "--out", str(tmp_path), "--modes", "relative"]) == 0
    import json

    result = json.loads((tmp_path / "bench_mraa_quick.json").read_text())["results"][0]
    assert set(result["ms_per_frame"]) == {"a", "b", "c"} and result["max_pixel_difference_vs_original"]["b"] <= 1
    assert (tmp_path / "bench_mraa_quick.md").is_file()


# ------------------------------------------------------------------------------------------------
# Both stages through run.py on real faces.

@pytest.fixture(scope="module")
def first_stage(faces, tmp_path_factory):
    """The reconstruction stage's round trip (train, resume exactly, animate in relative mode, reconstruct)."""
    tmp_path = tmp_path_factory.mktemp("mraa-train")

    class Capture:  # round_trip reads stderr through capsys; a module fixture has none
        def readouterr(self):
            return type("Out", (), {"err": ""})()

    return round_trip(TINY, faces, tmp_path, Capture(), NETWORKS)


def test_reconstruction_stage_checkpoint_is_the_original_layout(first_stage):
    saved = ckpt.read_checkpoint(str(first_stage))
    assert {"region_predictor", "bg_predictor", "generator", "optimizer_reconstruction"} <= set(saved)
    assert "optimizer_avd" not in saved
    assert saved["train_state"]["stage"] == "train"


def test_avd_mode_on_a_first_stage_checkpoint_is_one_line(first_stage, faces, tmp_path, capsys):
    raw = tiny_raw()
    raw["dataset_params"]["root_dir"] = str(faces)
    raw["animate_params"]["mode"] = "avd"
    config = tmp_path / "avd.yaml"
    config.write_text(yaml.safe_dump(raw))
    code, err = run_main(capsys, "--config", config, "--mode", "animate", "--checkpoint", first_stage, "--cpu",
                         "--out", tmp_path / "out")
    assert code != 0
    line = [line for line in err.splitlines() if "AVD network was never trained" in line]
    assert line and "--mode train_avd" in line[0]


def test_avd_stage_trains_resumes_and_animates_in_avd_mode(first_stage, faces, tmp_path, capsys):
    raw = tiny_raw()
    raw["animate_params"]["mode"] = "avd"
    avd_config = tmp_path / "tiny_mraa_avd.yaml"
    avd_config.write_text(yaml.safe_dump(raw, sort_keys=False))
    final = round_trip(str(avd_config), faces, tmp_path, capsys, NETWORKS, stage="train_avd", first_stage=first_stage)
    saved = ckpt.read_checkpoint(str(final))
    first = ckpt.read_checkpoint(str(first_stage))
    assert "optimizer_avd" in saved and "optimizer_reconstruction" not in saved
    assert saved["train_state"]["stage"] == "train_avd"
    # The first-stage networks are frozen: region predictor (eval-mode statistics too) and generator unchanged.
    for name in ("region_predictor", "bg_predictor", "generator"):
        for key, value in first[name].items():
            assert torch.equal(value, saved[name][key]), f"{name}.{key} changed in the AVD stage"
    assert any(not torch.equal(v, first["avd_network"][k]) for k, v in saved["avd_network"].items())


# ------------------------------------------------------------------------------------------------
# FPB-FOMM's MRAA_with_AWP (``fpb-mraa``).

FPB_TINY = "config/tiny_fpb_mraa.yaml"


def test_fpb_mraa_config_loads_and_needs_18_regions():
    config = load_config(ROOT / "config" / "fpb_mraa.yaml")
    assert config["model_params"]["method"] == "fpb-mraa" and config["dataset_params"]["prior_mode"] == "per_frame"
    raw = yaml.safe_load((ROOT / FPB_TINY).read_text())
    raw["model_params"]["num_regions"] = 10
    with pytest.raises(ConfigError, match="'model_params.num_regions' must be 18"):
        validate_config(raw)


def test_awp_regions_are_the_prior_as_the_original_computes_them():
    """shift = 2·p/256 − 1, heatmaps = the prior maps, covar = Σ (z − μ)(z − μ)ᵀ map(z) (unnormalised),
    affine·affineᵀ = covar; at 256×256 as the original, written out per sample and region."""
    from modules.fpb_fomm.prior_maps import prior_maps
    from modules.mraa.awp_region_predictor import RegionPredictor
    from modules.mraa.util import make_coordinate_grid

    torch.manual_seed(0)
    predictor = RegionPredictor(block_expansion=4, num_regions=18, num_channels=3, max_features=16, num_blocks=2,
                                temperature=0.1, estimate_affine=True, scale_factor=0.25, pca_based=True).eval()
    frames = torch.rand(2, 3, 256, 256)
    prior = torch.rand(2, 18, 2) * 160 + 48
    with torch.no_grad():
        out = predictor(frames, prior)
    maps = prior_maps(prior, (256, 256), (64, 64)).float()
    assert torch.equal(out["heatmap"], maps)
    assert torch.allclose(out["shift"], prior * 2 / 256 - 1)
    grid = make_coordinate_grid((64, 64), maps)
    for b in range(2):
        for r in (0, 9, 17):
            d = grid - out["shift"][b, r]
            covar = torch.einsum("hw,hwi,hwj->ij", maps[b, r], d, d)
            assert torch.allclose(out["covar"][b, r], covar, rtol=1e-4, atol=1e-4)
    assert torch.allclose(out["affine"] @ out["affine"].transpose(-1, -2), out["covar"], rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="needs prior"):
        predictor(frames)


def test_fpb_mraa_trains_resumes_exactly_animates_and_reconstructs(faces, tmp_path, capsys):
    final = round_trip(FPB_TINY, faces, tmp_path, capsys, NETWORKS)
    saved = ckpt.read_checkpoint(str(final))
    assert "region1.weight" in saved["region_predictor"] and "optimizer_reconstruction" in saved
