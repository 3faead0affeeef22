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
from tests.train_helpers import ROOT, face_clip, write_dataset

pytestmark = pytest.mark.filterwarnings("ignore::modules.perceptual.VGGWeightsMissing")


def _main(capsys, *argv):
    try:
        code = run.main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """A dataset on disk: train/ (2 clips × 4 frames + kpmaker files), test/ (one clip and one target
    face, with kpmaker files), 64×64 real faces."""
    root = write_dataset(tmp_path_factory.mktemp("methods"), num_clips=2, num_frames=4, size=64)
    import kpmaker

    frames, marks, prior = face_clip(2, num_frames=3, size=64)
    test = root / "test"
    for name, items in (("Positive_clip9", range(3)), ("target_face", range(1))):
        (test / name).mkdir(parents=True)
        names = []
        for t in items:
            names.append(f"img{t + 1}.png")
            Image.fromarray(frames[t] if name != "target_face" else frames[-1][::-1].copy()).save(test / name / names[-1])
        index = list(items) if name != "target_face" else [2]
        arrays = {"frames": np.array(names), "landmarks": marks[index], "prior": prior[index],
                  "found": np.ones(len(names), dtype=bool), "frame_size": np.array([64, 64], dtype=np.int64)}
        if name == "target_face":  # the flipped frame's landmarks are not these: let dlib measure it
            continue
        kpmaker.write_keypoints(kpmaker.keypoint_path(root / "keypoints", name), arrays, "test", "test")
    return root


def _tiny(method_overrides):
    with open(ROOT / "config" / "tiny.yaml") as handle:
        raw = yaml.safe_load(handle)
    raw["train_params"]["loss_weights"]["perceptual"] = [0, 0, 0, 0, 0]  # no VGG19 to build
    return method_overrides(raw)


def _fp_fomm(raw):
    return raw


def _fomm(raw):
    raw["model_params"]["method"] = "fomm"
    raw["model_params"]["common_params"]["num_kp"] = 10
    return raw


def _fpb_fomm(raw):
    raw["model_params"]["method"] = "fpb-fomm"
    return raw


METHOD_CONFIGS = {"fp-fomm": _fp_fomm, "fomm": _fomm, "fpb-fomm": _fpb_fomm}


def write_method_config(path, root, method, **train):
    raw = _tiny(METHOD_CONFIGS[method])
    raw["dataset_params"]["root_dir"] = str(root)
    raw["train_params"].update(train)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_every_registered_method_has_a_test_config():
    missing = [name for name in ("fp-fomm", "fomm", "fpb-fomm") if name not in METHOD_CONFIGS]
    assert not missing and set(METHOD_CONFIGS) <= set(methods.names())


def test_method_is_inferred_from_the_published_config_shapes():
    config = validate_config(yaml.safe_load((ROOT / "config" / "your_dataset_train.yaml").read_text()))
    assert config["model_params"]["method"] == "fp-fomm"
    assert validate_config(_tiny(_fomm))["model_params"]["method"] == "fomm"
    learned = _tiny(_fp_fomm)
    learned["model_params"]["common_params"]["num_kp"] = 10
    assert validate_config(learned)["model_params"]["method"] == "fomm"


def test_unknown_or_contradicting_method_is_one_line():
    raw = _tiny(_fp_fomm)
    raw["model_params"]["method"] = "fomm++"
    with pytest.raises(ConfigError, match="unknown 'model_params.method' 'fomm\\+\\+'.*fp-fomm"):
        validate_config(raw)
    raw["model_params"]["method"] = "fomm"
    raw["model_params"]["common_params"]["keypoint_mode"] = "prior"
    with pytest.raises(ConfigError, match="contradicts method 'fomm'"):
        validate_config(raw)


def test_build_networks_names_follow_the_original_checkpoints():
    for method in ("fp-fomm", "fpb-fomm"):
        networks = methods.build_networks(validate_config(_tiny(METHOD_CONFIGS[method]))["model_params"])
        assert set(networks) == {"kp_detector", "generator", "discriminator"}
    fpb = methods.build_networks(validate_config(_tiny(_fpb_fomm))["model_params"])
    assert "learn.weight" in fpb["kp_detector"].state_dict() and "learn1.weight" in fpb["kp_detector"].state_dict()


@pytest.mark.parametrize("method", sorted(METHOD_CONFIGS))
def test_method_trains_resumes_exactly_animates_and_reconstructs(method, faces, tmp_path, capsys):
    config = write_method_config(tmp_path / f"{method}.yaml", faces, method, num_epochs=2, num_repeats=1)
    straight = tmp_path / "straight"
    code, err = _main(capsys, "--config", config, "--log_dir", straight, "--cpu", "--seed", 3)
    assert code == 0, err
    (run_dir,) = straight.iterdir()
    final = ckpt.read_checkpoint(str(run_dir / "00000001-checkpoint.pth.tar"))

    # Same run in two halves: one epoch, then a resume that finishes the second.
    one = write_method_config(tmp_path / f"{method}-1.yaml", faces, method, num_epochs=1, num_repeats=1)
    halves = tmp_path / "halves"
    code, err = _main(capsys, "--config", one, "--log_dir", halves, "--cpu", "--seed", 3)
    assert code == 0, err
    (half_dir,) = halves.iterdir()
    code, err = _main(capsys, "--config", config, "--checkpoint", half_dir / "00000000-checkpoint.pth.tar", "--cpu")
    assert code == 0, err
    resumed = ckpt.read_checkpoint(str(half_dir / "00000001-checkpoint.pth.tar"))
    for name in ("kp_detector", "generator", "discriminator"):
        for key, value in final[name].items():
            assert torch.equal(value, resumed[name][key]), f"{name}.{key} differs after resume"
    assert (run_dir / "train-vis" / "00000001-rec.png").is_file()

    out = tmp_path / "animation"
    code, err = _main(capsys, "--config", config, "--mode", "animate", "--checkpoint",
                      run_dir / "00000001-checkpoint.pth.tar", "--cpu", "--out", out)
    assert code == 0, err
    frames = sorted((out / "Positive_clip9-target_face").glob("*.png"))
    assert [f.name for f in frames] == ["img1.png", "img2.png", "img3.png"]
    assert (out / "Positive_clip9-target_face.mp4").is_file() and (out / "png" / "Positive_clip9-target_face.png").is_file()

    recon = tmp_path / "reconstruction"
    code, err = _main(capsys, "--config", config, "--mode", "reconstruction", "--checkpoint",
                      run_dir / "00000001-checkpoint.pth.tar", "--cpu", "--out", recon, "--no_eval")
    assert code == 0, err
    assert len(list((recon / "Positive_clip9").glob("*.png"))) == 3


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
        return torch.from_numpy(target).permute(2, 0, 1)[None].float() / 255

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
    code, err = _main(capsys, "--config", config, "--log_dir", tmp_path / "log", "--cpu")
    assert code == 0, err
    (run_dir,) = (tmp_path / "log").iterdir()
    saved = ckpt.read_checkpoint(str(run_dir / "00000000-checkpoint.pth.tar"))
    assert set(saved["generator"]) == {"mix.weight", "mix.bias"} and "optimizer_generator" in saved
    assert saved["train_state"]["iteration"] == 1

    out = tmp_path / "animation"
    code, err = _main(capsys, "--config", config, "--mode", "animate", "--checkpoint",
                      run_dir / "00000000-checkpoint.pth.tar", "--cpu", "--out", out)
    assert code == 0, err
    generated = [np.asarray(Image.open(p)) for p in sorted((out / "Positive_clip9-target_face").glob("*.png"))]
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
