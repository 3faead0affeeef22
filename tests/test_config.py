"""Config loading: published configs load, mistakes give one message naming file and key."""
import pytest
import yaml

from configuration import ConfigError, build_networks, load_config, validate_config
from modules.keypoint_detector import resolve_keypoint_mode


@pytest.mark.parametrize("name", ["your_dataset_train", "your_dataset_test", "tiny"])
def test_shipped_configs_load_and_build(name):
    config = load_config(f"config/{name}.yaml")
    kp, gen, disc = build_networks(config["model_params"])
    assert kp.mode == "prior" and kp.num_kp == 18
    assert config["train_params"]["prior_equivariance"] == "corrected"


def write(tmp_path, data):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def base():
    with open("config/tiny.yaml") as handle:
        return yaml.safe_load(handle)


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    data = base()
    data["model_params"]["generator_params"]["num_bottleneck_block"] = 2
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message and "model_params.generator_params.num_bottleneck_block" in message
    assert "num_bottleneck_blocks" in message and "\n" not in message


def test_missing_key_and_wrong_type(tmp_path):
    data = base()
    del data["model_params"]["kp_detector_params"]["temperature"]
    with pytest.raises(ConfigError, match="missing key 'model_params.kp_detector_params.temperature'"):
        load_config(write(tmp_path, data))
    data = base()
    data["train_params"]["batch_size"] = "four"
    with pytest.raises(ConfigError, match="'train_params.batch_size' must be integer"):
        load_config(write(tmp_path, data))
    data = base()
    data["train_params"]["prior_equivariance"] = "fixed"
    with pytest.raises(ConfigError, match="must be one of corrected, reference"):
        load_config(write(tmp_path, data))


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model_params: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_defaults_filled_and_scientific_notation_read(tmp_path):
    data = base()
    data["train_params"]["lr_generator"] = "2e-4"  # YAML 1.1 reads this as a string
    del data["train_params"]["transform_params"]
    config = load_config(write(tmp_path, data))
    assert config["train_params"]["lr_generator"] == pytest.approx(2e-4)
    assert config["train_params"]["transform_params"] == {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5}
    assert config["model_params"]["common_params"]["align_corners"] is False


def test_animation_only_config_needs_no_train_params():
    data = base()
    del data["train_params"]
    assert validate_config(data)["train_params"] is None


def test_frame_shape_must_match_channels():
    data = base()
    data["dataset_params"]["frame_shape"] = [64, 64, 1]
    with pytest.raises(ConfigError, match="frame_shape"):
        validate_config(data)


def test_keypoint_mode_resolution():
    assert resolve_keypoint_mode(18) == "prior"
    assert resolve_keypoint_mode(10) == "learned"
    assert resolve_keypoint_mode(18, "learned") == "learned"
    with pytest.raises(ValueError):
        resolve_keypoint_mode(10, "both")
    data = base()
    data["model_params"]["common_params"]["keypoint_mode"] = "learned"
    kp, _, _ = build_networks(validate_config(data)["model_params"])
    assert kp.mode == "learned" and kp.predictor.encoder.down_blocks[0].conv.in_channels == 3
