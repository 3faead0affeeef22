"""Outputs of the published implementation, recorded in ../shared/reference, reproduced to 1e-5."""
import pytest
import torch

from configuration import build_networks, validate_config
from modules.blocks import gaussian_blur_kernel
from modules.face_landmarks import FaceLandmarker
from modules.facial_prior import prior_from_landmarks, region_mask
from modules.geometry import Transform
from modules.motion_transfer import normalize_kp

ATOL = 1e-5


def chw(image):
    return image.permute(2, 0, 1).unsqueeze(0)


def networks(model_params, checkpoint, eval_mode=True, discriminator_params=None):
    model_params = dict(model_params)
    if discriminator_params is not None:  # the FOMM recording built no discriminator
        model_params.setdefault("discriminator_params", discriminator_params)
    config = validate_config({"dataset_params": {"root_dir": "unused", "frame_shape": [256, 256, 3]},
                              "model_params": model_params})
    kp, gen, disc = build_networks(config["model_params"])
    kp.load_state_dict(checkpoint["kp_detector"], strict=True)
    gen.load_state_dict(checkpoint["generator"], strict=True)
    if "discriminator" in checkpoint:
        disc.load_state_dict(checkpoint["discriminator"], strict=True)
    for module in (kp, gen, disc):
        module.train(not eval_mode)
    return kp, gen, disc


def assert_close(actual, expected, atol=ATOL):
    assert actual.shape == expected.shape
    diff = (actual - expected).abs().max().item()
    assert diff <= atol, f"max abs diff {diff:.3g} > {atol}"


def test_parameter_names_and_shapes_match(reference):
    kp, gen, disc = build_networks(validate_config({
        "dataset_params": {"root_dir": "unused", "frame_shape": [256, 256, 3]},
        "model_params": reference["model_params"]})["model_params"])
    for name, module in (("kp_detector", kp), ("generator", gen), ("discriminator", disc)):
        ours = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in reference["checkpoint"][name].items()}
        assert ours == theirs, name


def test_antialias_kernel_equals_recorded_buffer(reference):
    recorded = reference["checkpoint"]["kp_detector"]["down.weight"]
    assert_close(gaussian_blur_kernel(0.25).expand_as(recorded[:, 0]).unsqueeze(1), recorded, atol=0)


@pytest.mark.parametrize("which", ["source", "driving"])
def test_prior_keypoints_from_dlib(reference, which):
    landmarks = FaceLandmarker().landmarks(reference[f"{which}_image"].numpy())
    assert landmarks is not None
    assert_close(prior_from_landmarks(torch.from_numpy(landmarks)), reference[f"prior_kp_{which}"], atol=0)


def test_region_mask(reference):
    mask = region_mask(reference["prior_kp_source"][None], (256, 256), (64, 64))
    assert_close(mask[0], reference["region_mask_source"])


def test_eval_forward(reference):
    kp, gen, disc = networks(reference["model_params"], reference["checkpoint"])
    recorded = reference["eval"]
    with torch.no_grad():
        kp_source = kp(chw(reference["source_image"]), reference["prior_kp_source"][None])
        kp_driving = kp(chw(reference["driving_image"]), reference["prior_kp_driving"][None])
        for key in ("value", "jacobian"):
            assert_close(kp_source[key], recorded["kp_source"][key])
            assert_close(kp_driving[key], recorded["kp_driving"][key])
        out = gen(chw(reference["source_image"]), kp_source=kp_source, kp_driving=kp_driving)
        for key, expected in recorded["generator"].items():
            assert_close(out[key], expected)
        maps = disc({"prediction_1": recorded["generator"]["prediction"]})
    assert_close(maps["prediction_map_1"], recorded["discriminator_prediction_map_1"])
    for ours, theirs in zip(maps["feature_maps_1"], recorded["discriminator_feature_maps_1"], strict=True):
        assert_close(ours, theirs)


def test_train_mode_forward(reference):
    kp, gen, _ = networks(reference["model_params"], reference["checkpoint"], eval_mode=False)
    recorded = reference["train_mode"]
    with torch.no_grad():
        kp_source = kp(recorded["source"], recorded["prior_kp"])
        kp_driving = kp(recorded["driving"], recorded["prior_kp"])
        out = gen(recorded["source"], kp_source=kp_source, kp_driving=kp_driving)
    assert_close(kp_source["jacobian"], recorded["kp_source_jacobian"])
    assert_close(kp_driving["jacobian"], recorded["kp_driving_jacobian"])
    assert_close(out["prediction"], recorded["prediction"])


@pytest.mark.parametrize("adapt", [False, True])
@pytest.mark.parametrize("relative", [False, True])
def test_normalize_kp(reference, adapt, relative):
    recorded = reference["normalize_kp"]
    out = normalize_kp(recorded["kp_source"], recorded["kp_driving"], recorded["kp_driving_initial"],
                       adapt_movement_scale=adapt, use_relative_movement=relative, use_relative_jacobian=relative)
    expected = recorded["results"][f"adapt={adapt},relative={relative}"]
    assert_close(out["value"], expected["value"])
    assert_close(out["jacobian"], expected["jacobian"])


def test_transform(reference):
    recorded = reference["transform"]
    transform = Transform(2, theta=recorded["theta"], control_points=recorded["control_points"],
                          control_params=recorded["control_params"])
    assert_close(transform.warp_coordinates(recorded["coordinates"]), recorded["warped"])
    assert_close(transform.jacobian(recorded["coordinates"]).detach(), recorded["jacobian"])
    assert_close(transform.transform_frame(recorded["frame"]), recorded["transformed_frame"])


def test_vanilla_fomm(reference):
    recorded = reference["fomm"]
    kp, gen, _ = networks(recorded["model_params"], recorded["checkpoint"],
                          discriminator_params=reference["model_params"]["discriminator_params"])
    assert kp.mode == "learned"
    with torch.no_grad():
        kp_source, kp_driving = kp(recorded["source"]), kp(recorded["driving"])
        for key in ("value", "jacobian"):
            assert_close(kp_source[key], recorded["kp_source"][key])
            assert_close(kp_driving[key], recorded["kp_driving"][key])
        out = gen(recorded["source"], kp_source=kp_source, kp_driving=kp_driving)
    for key in ("prediction", "occlusion_map", "deformed"):
        assert_close(out[key], recorded[key])
