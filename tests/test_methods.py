"""The method registry: a method is an addition (a toy method registered here trains and animates
through run.py with no edit elsewhere), and every registered method trains, resumes exactly,
animates and reconstructs through run.py on real faces with its tiny config."""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

import checkpoint as ckpt
import methods
import run
from configuration import NUM, ConfigError, Field, Section, train_section, validate_config
from tests.method_helpers import TARGET, TEST_CLIP, faces, round_trip, run_main  # noqa: F401 (fixture)
from tests.train_helpers import ROOT

pytestmark = pytest.mark.filterwarnings("ignore::modules.perceptual.VGGWeightsMissing")


FOMM_FAMILY = {"fp-fomm": "config/tiny.yaml", "fomm": "config/tiny_fomm.yaml", "fpb-fomm": "config/tiny_fpb_fomm.yaml"}


def _tiny(method):
    return yaml.safe_load((ROOT / FOMM_FAMILY[method]).read_text())


def test_every_registered_method_has_a_tiny_config_and_a_round_trip_test():
    for name in methods.names():
        configs = [p for p in (ROOT / "config").glob("tiny*.yaml")
                   if validate_config(yaml.safe_load(p.read_text()))["model_params"]["method"] == name]
        assert configs, f"no config/tiny*.yaml for method {name}"
        tests = [p for p in (ROOT / "tests").glob("test_*.py") if "round_trip(" in p.read_text()
                 and any(c.name in p.read_text() for c in configs)]
        assert tests, f"no round-trip test for method {name}"


def test_method_is_inferred_from_the_published_config_shapes():
    config = validate_config(yaml.safe_load((ROOT / "config" / "your_dataset_train.yaml").read_text()))
    assert config["model_params"]["method"] == "fp-fomm"
    assert validate_config(_tiny("fomm"))["model_params"]["method"] == "fomm"
    learned = _tiny("fp-fomm")
    learned["model_params"]["common_params"]["num_kp"] = 10
    assert validate_config(learned)["model_params"]["method"] == "fomm"


def test_unknown_or_contradicting_method_is_one_line():
    raw = _tiny("fp-fomm")
    raw["model_params"]["method"] = "fomm++"
    with pytest.raises(ConfigError, match="unknown 'model_params.method' 'fomm\\+\\+'.*fp-fomm"):
        validate_config(raw)
    raw["model_params"]["method"] = "fomm"
    raw["model_params"]["common_params"]["keypoint_mode"] = "prior"
    with pytest.raises(ConfigError, match="contradicts method 'fomm'"):
        validate_config(raw)


def test_build_networks_names_follow_the_original_checkpoints():
    for method in ("fp-fomm", "fpb-fomm"):
        networks = methods.build_networks(validate_config(_tiny(method))["model_params"])
        assert set(networks) == {"kp_detector", "generator", "discriminator"}
    fpb = methods.build_networks(validate_config(_tiny("fpb-fomm"))["model_params"])
    assert "learn.weight" in fpb["kp_detector"].state_dict() and "learn1.weight" in fpb["kp_detector"].state_dict()


@pytest.mark.parametrize("method", sorted(FOMM_FAMILY))
def test_method_trains_resumes_exactly_animates_and_reconstructs(method, faces, tmp_path, capsys):
    round_trip(FOMM_FAMILY[method], faces, tmp_path, capsys, ("kp_detector", "generator", "discriminator"))


# ------------------------------------------------------------------------------------------------
# A method defined in a few lines, in this test only: the identity "motion" model (the target as it is,
# through a learned 1×1 convolution initialised near the identity).

class IdentityMotion(nn.Module):
    def __init__(self, num_channels=3):
        super().__init__()
        self.num_channels = num_channels
        self.mix = nn.Conv2d(num_channels, num_channels, 1)

    def forward(self, source):
        return self.mix(source)


class ToyTraining:
    def __init__(self, networks, config, device):
        self.networks, self.params = networks, config["train_params"]

    def optimizers(self):
        return {"optimizer_generator": torch.optim.SGD(self.networks["generator"].parameters(), lr=self.params["lr"])}

    def schedulers(self, optimizers):
        return {}

    def phases(self, batch, epoch, iteration):
        from train import Phase

        prediction = self.networks["generator"](batch["source"])
        loss = (prediction - batch["driving"]).abs().mean()
        yield Phase({"l1": loss}, ("optimizer_generator",), ("generator",), {"prediction": prediction})

    def distribute(self, device):
        raise NotImplementedError

    def sheet(self, batch, generated, visualizer_params):
        return (generated["prediction"][0].detach().clamp(0, 1).permute(1, 2, 0) * 255).byte().numpy()


class ToyDriver:
    uses_prior, num_channels = False, 3

    def __init__(self, generator, batch_frames):
        self.generator, self.batch_frames = generator, batch_frames

    def start(self, target, first, **_):
        return torch.from_numpy(np.array(target)).permute(2, 0, 1)[None].float() / 255

    def generate(self, pair, frames, priors=None, gray=False):
        with torch.no_grad():
            out = self.generator(pair).expand(len(frames), -1, -1, -1)
        return (out.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


class ToySpec:
    name = "toy"
    uses_prior = False
    animation_networks = ("generator",)
    sections = {"model_params": Section({"num_channels": Field(int, 3)}),
                "train_params": train_section({"lr": Field(NUM, 1e-3, above=0)})}

    def build_networks(self, model_params):
        return {"generator": IdentityMotion(model_params["num_channels"])}

    def training(self, networks, config, device):
        return ToyTraining(networks, config, device)

    def driver(self, networks, config, device, precision="fp32", compile=False, batch_frames=8):
        return ToyDriver(networks["generator"], batch_frames)


@pytest.fixture
def toy_method():
    methods.register("toy", ToySpec())
    yield
    methods.unregister("toy")


def test_a_method_is_an_addition(toy_method, faces, tmp_path, capsys):
    raw = {"dataset_params": {"root_dir": str(faces), "frame_shape": [64, 64, 3]},
           "model_params": {"method": "toy"},
           "train_params": {"num_epochs": 1, "num_repeats": 1, "batch_size": 2, "num_workers": 0, "lr": 0.01}}
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump(raw))
    code, err = run_main(capsys, "--config", config, "--log_dir", tmp_path / "log", "--cpu")
    assert code == 0, err
    (run_dir,) = (tmp_path / "log").iterdir()
    saved = ckpt.read_checkpoint(str(run_dir / "00000000-checkpoint.pth.tar"))
    assert set(saved["generator"]) == {"mix.weight", "mix.bias"} and "optimizer_generator" in saved
    assert saved["train_state"]["iteration"] == 1

    out = tmp_path / "animation"
    code, err = run_main(capsys, "--config", config, "--mode", "animate", "--checkpoint",
                      run_dir / "00000000-checkpoint.pth.tar", "--cpu", "--out", out)
    assert code == 0, err
    generated = [np.asarray(Image.open(p)) for p in sorted((out / f"{TEST_CLIP}-{TARGET}").glob("*.png"))]
    assert len(generated) == 3 and all(np.array_equal(g, generated[0]) for g in generated)  # identity motion


def test_a_method_without_a_valid_key_is_refused(toy_method):
    raw = {"dataset_params": {"root_dir": "x", "frame_shape": [64, 64, 3]},
           "model_params": {"method": "toy", "num_kp": 10}}
    with pytest.raises(ConfigError, match="unknown key 'model_params.num_kp'"):
        validate_config(copy.deepcopy(raw))
    raw["model_params"] = {"method": "toy"}
    raw["train_params"] = {"num_epochs": 1, "batch_size": 1, "lr": 0}
    with pytest.raises(ConfigError, match="'train_params.lr' must be greater than 0"):
        validate_config(raw)
