"""MRAA (modules/mraa/) against the tensors recorded from snap-research/articulated-animation @ 03f1968
(../shared/reference/mraa-a.pt, described in MOTION.md), plus the encode/decode split, the training
losses and the published configs."""
import copy
from pathlib import Path

import pytest
import torch
import yaml

from modules.geometry import Transform
from modules.mraa import (AVDNetwork, BGMotionPredictor, Generator, PixelwiseFlowPredictor, RegionPredictor,
                          get_animation_region_params)
from modules.mraa.model import (AVDTrainingModel, ReconstructionModel, avd_reconstruction_loss,
                                equivariance_affine_loss, equivariance_shift_loss, random_scale)
from modules.mraa.region_predictor import svd
from modules.mraa.util import AntiAliasInterpolation2d, region2gaussian
from modules.perceptual import ImagePyramid

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "reference" / "mraa-a.pt"
CONFIGS = ("vox256", "taichi256", "ted384", "ted-youtube384", "mgif256")


@pytest.fixture(scope="module")
def ref():
    if not FIXTURE.is_file():
        pytest.fail(f"MRAA reference fixture missing: {FIXTURE}")
    return torch.load(FIXTURE, weights_only=True)


def lookup(ref, path):
    value = ref
    for key in path.split("/"):
        value = value[key]
    return value


def assert_close(ref, path, actual):
    expected = lookup(ref, path)
    atol = max(1e-5, 4 * ref["float64_gap"][path])
    diff = (actual - expected).abs().max().item()
    assert actual.shape == expected.shape, path
    assert diff <= atol, f"{path}: max abs diff {diff:.3g} > {atol:.3g}"


def build(model_params):
    mp = model_params
    return {
        "region_predictor": RegionPredictor(num_regions=mp["num_regions"], num_channels=mp["num_channels"],
                                            estimate_affine=mp["estimate_affine"], **mp["region_predictor_params"]),
        "bg_predictor": BGMotionPredictor(num_channels=mp["num_channels"], **mp["bg_predictor_params"]),
        "generator": Generator(num_regions=mp["num_regions"], num_channels=mp["num_channels"],
                               revert_axis_swap=mp["revert_axis_swap"], **mp["generator_params"]),
        "avd_network": AVDNetwork(num_regions=mp["num_regions"], **mp["avd_network_params"]),
    }


def loaded(ref, mode="eval"):
    nets = build(ref["model_params"])
    for name, net in nets.items():
        net.load_state_dict(ref["checkpoint"][name], strict=True)
        net.train(mode == "train")
    return nets


@pytest.fixture(scope="module")
def nets(ref):
    return loaded(ref)


@pytest.fixture(scope="module")
def evaluated(ref, nets):
    S, D = ref["inputs"]["source"], ref["inputs"]["driving"]
    rp, bg, gen = nets["region_predictor"], nets["bg_predictor"], nets["generator"]
    with torch.no_grad():
        rps, rpd = rp(S), rp(D)
        bg_params = bg(S, D)
        out = {"region_params_source": rps, "region_params_driving": rpd, "bg_params": bg_params,
               "generator": gen(S, source_region_params=rps, driving_region_params=rpd, bg_params=bg_params),
               "generator_no_bg": gen(S, source_region_params=rps, driving_region_params=rpd),
               "avd": nets["avd_network"](rps, rpd)}
    return out


# --- checkpoints --------------------------------------------------------------------------------


def test_checkpoints_load_strictly_with_batchnorm_counters(ref):
    nets = build(ref["model_params"])
    for name, net in nets.items():
        state = ref["checkpoint"][name]
        assert set(net.state_dict()) == set(state), name
        net.load_state_dict(state, strict=True)
        counters = [k for k in state if k.endswith("num_batches_tracked")]
        assert counters, name
        if name != "avd_network":  # SynchronizedBatchNorm2d never counts; the AVD's nn.BatchNorm1d does
            assert all(int(state[k]) == 0 for k in counters), name


# --- eval mode ----------------------------------------------------------------------------------

REGION_KEYS = ("shift", "covar", "heatmap", "affine", "u", "d")


@pytest.mark.parametrize("which", ["region_params_source", "region_params_driving"])
@pytest.mark.parametrize("key", REGION_KEYS)
def test_region_predictor(ref, evaluated, which, key):
    assert_close(ref, f"eval/{which}/{key}", evaluated[which][key])


def test_region_affine_is_covariance_square_root(evaluated):
    params = evaluated["region_params_source"]
    affine = params["affine"]
    torch.testing.assert_close(affine @ affine.transpose(-1, -2), params["covar"], atol=1e-6, rtol=1e-5)


def test_bg_predictor(ref, evaluated):
    assert_close(ref, "eval/bg_params", evaluated["bg_params"])


@pytest.mark.parametrize("key", ["prediction", "deformed", "occlusion_map"])
def test_generator(ref, evaluated, key):
    assert_close(ref, f"eval/generator/{key}", evaluated["generator"][key])


def test_generator_without_background(ref, evaluated):
    assert_close(ref, "eval/generator_no_bg/prediction", evaluated["generator_no_bg"]["prediction"])


@pytest.mark.parametrize("key", ["shift", "affine", "covar"])
def test_avd(ref, evaluated, key):
    assert_close(ref, f"eval/avd/{key}", evaluated["avd"][key])


def test_pixelwise_flow_and_internals(ref, nets, evaluated):
    S = ref["inputs"]["source"]
    pf = nets["generator"].pixelwise_flow_predictor
    rps, rpd, bg_params = evaluated["region_params_source"], evaluated["region_params_driving"], evaluated["bg_params"]
    with torch.no_grad():
        out = pf(source_image=S, driving_region_params=rpd, source_region_params=rps, bg_params=bg_params)
        source_down = pf.down(S)
        heatmap = pf.create_heatmap_representations(source_down, rpd, rps)
        sparse_motion = pf.create_sparse_motions(source_down, rpd, rps, bg_params=bg_params)
        sparse_deformed = pf.create_deformed_source_image(source_down, sparse_motion)
    assert_close(ref, "eval/pixelwise_flow/optical_flow", out["optical_flow"])
    assert_close(ref, "eval/pixelwise_flow/occlusion_map", out["occlusion_map"])
    internals = "eval/pixelwise_flow_internals/"
    assert_close(ref, internals + "source_down", source_down)
    assert_close(ref, internals + "heatmap_representation", heatmap)
    assert_close(ref, internals + "sparse_motion", sparse_motion)
    assert_close(ref, internals + "sparse_deformed", sparse_deformed)


def test_region2affine_and_svd(ref, nets):
    rp = nets["region_predictor"]
    params = rp.region2affine(ref["inputs"]["region2affine"]["heatmap"])
    assert_close(ref, "region2affine/shift", params["shift"])
    assert_close(ref, "region2affine/covar", params["covar"])
    u, s, v = svd(params["covar"].view(-1, 2, 2), False)
    assert_close(ref, "region2affine/svd_u", u)
    assert_close(ref, "region2affine/svd_s", s)
    assert_close(ref, "region2affine/svd_v", v)


# --- animation ----------------------------------------------------------------------------------


def animation_inputs(ref):
    a = ref["inputs"]["animation"]
    return a["source"], a["driving"], a["driving_initial"]


@pytest.mark.parametrize("mode", ["standard", "relative", "avd"])
def test_animation_region_params_published(ref, nets, mode):
    source, driving, initial = animation_inputs(ref)
    with torch.no_grad():
        out = get_animation_region_params(source, driving, initial, mode=mode, avd_network=nets["avd_network"],
                                          relative_covar="driving")
    for key in ("shift", "affine", "covar"):
        assert_close(ref, f"animation_region_params/{mode}/{key}", out[key])


def test_relative_covariance_follows_the_new_affine_by_default(ref):
    source, driving, initial = animation_inputs(ref)
    out = get_animation_region_params(source, driving, initial, mode="relative")
    published = get_animation_region_params(source, driving, initial, mode="relative", relative_covar="driving")
    torch.testing.assert_close(out["shift"], published["shift"], atol=0, rtol=0)
    torch.testing.assert_close(out["affine"], published["affine"], atol=0, rtol=0)
    torch.testing.assert_close(out["covar"], out["affine"] @ out["affine"].transpose(-1, -2))
    assert not torch.allclose(out["covar"], driving["covar"])


def test_relative_without_movement_scale_is_plain_difference():
    g = torch.Generator().manual_seed(1)
    source = {"shift": torch.rand(1, 4, 2, generator=g), "affine": torch.eye(2).repeat(1, 4, 1, 1)}
    initial = {"shift": 3 * source["shift"] - 1, "affine": torch.eye(2).repeat(1, 4, 1, 1)}
    driving = {"shift": initial["shift"] + 0.1, "affine": 2 * torch.eye(2).repeat(1, 4, 1, 1)}
    out = get_animation_region_params(source, driving, initial, mode="relative", adapt_movement_scale=False)
    torch.testing.assert_close(out["shift"], source["shift"] + 0.1)
    torch.testing.assert_close(out["affine"], 2 * source["affine"])
    scaled = get_animation_region_params(source, driving, initial, mode="relative")
    # The initial regions are the source's scaled by 3 (and moved): hull area 9× → motion × 1/3.
    torch.testing.assert_close(scaled["shift"], source["shift"] + 0.1 / 3)


def test_avd_mode_expands_one_source_over_driving_batch(ref, nets):
    source, driving, initial = animation_inputs(ref)
    batch = {k: torch.cat([v, v.flip(1)]) for k, v in driving.items()}
    with torch.no_grad():
        out = get_animation_region_params(source, batch, initial, mode="avd", avd_network=nets["avd_network"])
        single = get_animation_region_params(source, driving, initial, mode="avd", avd_network=nets["avd_network"])
    torch.testing.assert_close(out["shift"][:1], single["shift"], atol=1e-6, rtol=0)


# --- equivariance transform ---------------------------------------------------------------------


def test_transform(ref):
    t = ref["inputs"]["transform"]
    transform = Transform(2, **t["transform_params"])
    transform.theta = t["theta"]
    transform.control_params = t["control_params"]
    assert_close(ref, "transform/control_points", transform.control_points)
    coordinates = t["coordinates"].clone().requires_grad_(True)
    assert_close(ref, "transform/warped", transform.warp_coordinates(coordinates).detach())
    assert_close(ref, "transform/jacobian", transform.jacobian(coordinates).detach())
    assert_close(ref, "transform/transformed_frame", transform.transform_frame(t["frame"]))


# --- train mode ---------------------------------------------------------------------------------


def test_train_mode(ref):
    nets = loaded(ref, mode="train")
    inputs = ref["inputs"]
    S, D = inputs["train_source"], inputs["train_driving"]
    with torch.no_grad():
        rps = nets["region_predictor"](S)
        rpd = nets["region_predictor"](D)
        bg_params = nets["bg_predictor"](S, D)
        generated = nets["generator"](S, source_region_params=rps, driving_region_params=rpd, bg_params=bg_params)
        avd = nets["avd_network"](inputs["train_avd"]["x_id"], inputs["train_avd"]["x_pose"])
    for key in REGION_KEYS:
        assert_close(ref, f"train_mode/region_params_source/{key}", rps[key])
        assert_close(ref, f"train_mode/region_params_driving/{key}", rpd[key])
    assert_close(ref, "train_mode/bg_params", bg_params)
    for key in ("prediction", "deformed", "occlusion_map"):
        assert_close(ref, f"train_mode/generator/{key}", generated[key])
    for key in ("shift", "affine", "covar"):
        assert_close(ref, f"train_mode/avd/{key}", avd[key])
    # The running statistics moved (train mode really used batch statistics).
    state = nets["region_predictor"].state_dict()
    key = "predictor.encoder.down_blocks.0.norm.running_mean"
    assert not torch.equal(state[key], ref["checkpoint"]["region_predictor"][key])


# --- encode / decode ----------------------------------------------------------------------------


def test_decode_of_encode_is_forward_exactly(ref, nets, evaluated):
    gen = nets["generator"]
    S = ref["inputs"]["source"]
    rps, rpd, bg_params = evaluated["region_params_source"], evaluated["region_params_driving"], evaluated["bg_params"]
    with torch.no_grad():
        out = gen.decode(S, gen.encode(S), rpd, rps, bg_params=bg_params)
    for key in ("prediction", "deformed", "occlusion_map"):
        assert torch.equal(out[key], evaluated["generator"][key]), key


def test_decode_batch_of_driving_frames_against_one_encoding(ref, nets):
    gen, rp = nets["generator"], nets["region_predictor"]
    S, D = ref["inputs"]["source"], ref["inputs"]["driving"]
    frames = torch.cat([D, S, D.flip(-1)])
    with torch.no_grad():
        rps, rpd = rp(S), rp(frames)
        encoded = gen.encode(S)
        batched = gen.decode(S, encoded, rpd, rps)
        for i in range(frames.shape[0]):
            single = gen(S, driving_region_params={k: v[i:i + 1] for k, v in rpd.items() if k not in ("u", "d")},
                         source_region_params=rps)
            for key in ("prediction", "deformed", "occlusion_map"):
                torch.testing.assert_close(batched[key][i:i + 1], single[key], atol=1e-5, rtol=0)


# --- building blocks ----------------------------------------------------------------------------


def test_region2gaussian_covariance_matches_isotropic():
    centre = torch.tensor([[[0.2, -0.3], [0.0, 0.5]]])
    covar = 0.04 * torch.eye(2).repeat(1, 2, 1, 1)
    torch.testing.assert_close(region2gaussian(centre, covar, (16, 16)), region2gaussian(centre, 0.04, (16, 16)))
    peak = region2gaussian(torch.zeros(1, 1, 2), torch.tensor([[[[0.1, 0.0], [0.0, 0.4]]]]), (5, 5))
    assert peak[0, 0, 2, 2] == 1  # the grid's centre pixel is (0, 0)
    # Wider along y: one step in y (Δ=0.5) decays less than one step in x.
    assert peak[0, 0, 3, 2] > peak[0, 0, 2, 3]


@pytest.mark.parametrize("bg_type", ["zero", "shift", "affine", "perspective"])
def test_bg_types_start_at_identity(bg_type):
    bg = BGMotionPredictor(block_expansion=4, num_channels=3, max_features=8, num_blocks=2, bg_type=bg_type).eval()
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(bg(x, x), torch.eye(3).repeat(2, 1, 1))
    if bg_type == "zero":
        assert not list(bg.parameters())


def test_bg_perspective_layout():
    bg = BGMotionPredictor(block_expansion=4, num_channels=3, max_features=8, num_blocks=2, bg_type="perspective")
    with torch.no_grad():
        bg.fc.bias.copy_(torch.arange(1.0, 9.0))
    out = bg.eval()(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    torch.testing.assert_close(out[0], torch.tensor([[1.0, 2, 3], [4, 5, 6], [7, 8, 1]]))


def test_bg_rejects_unknown_type():
    with pytest.raises(ValueError):
        BGMotionPredictor(block_expansion=4, num_channels=3, max_features=8, num_blocks=2, bg_type="tps")


def test_regression_affine_variant_starts_at_identity():
    rp = RegionPredictor(block_expansion=4, num_regions=3, num_channels=3, max_features=8, num_blocks=2,
                         temperature=0.1, estimate_affine=True, pca_based=False).eval()
    out = rp(torch.rand(2, 3, 16, 16))
    torch.testing.assert_close(out["affine"], torch.eye(2).repeat(2, 3, 1, 1))
    assert "u" not in out and out["covar"].shape == (2, 3, 2, 2)


def test_identity_motion_flow_is_the_identity_grid():
    pf = PixelwiseFlowPredictor(block_expansion=4, num_blocks=2, max_features=8, num_regions=2, num_channels=3,
                                use_covar_heatmap=True, revert_axis_swap=True).eval()
    params = {"shift": torch.tensor([[[0.1, 0.2], [-0.3, 0.0]]]),
              "affine": torch.tensor([[[[0.2, 0.0], [0.0, 0.1]], [[-0.1, 0.05], [0.0, -0.2]]]])}
    params["covar"] = params["affine"] @ params["affine"].transpose(-1, -2)
    x = torch.rand(1, 3, 16, 16)
    flipped = dict(params, affine=-params["affine"])  # an SVD axis flip of the driving regions
    motions = pf.create_sparse_motions(x, flipped, params)
    grid = motions[:, :1].expand_as(motions)
    torch.testing.assert_close(motions, grid)
    out = pf(x, params, params)
    torch.testing.assert_close(out["optical_flow"], grid[:, 0], atol=1e-6, rtol=0)


def test_image_pyramid_matches_the_original_convolution():
    x = torch.rand(2, 3, 64, 64)
    pyramid = ImagePyramid([1, 0.5, 0.25], 3)(x)
    for scale in (0.5, 0.25):
        torch.testing.assert_close(pyramid[f"prediction_{scale}"], AntiAliasInterpolation2d(3, scale)(x),
                                   atol=1e-6, rtol=0)
    assert torch.equal(pyramid["prediction_1"], x)


# --- training losses ----------------------------------------------------------------------------


def test_equivariance_losses_vanish_for_an_exact_affine_warp():
    g = torch.Generator().manual_seed(3)
    theta = torch.eye(2, 3).repeat(2, 1, 1) + 0.1 * torch.randn(2, 2, 3, generator=g)
    transform = Transform(2, theta=theta)
    linear, offset = theta[:, None, :, :2], theta[:, None, :, 2]
    driving_shift = torch.rand(2, 5, 2, generator=g) - 0.5
    driving_affine = torch.randn(2, 5, 2, 2, generator=g)
    transformed_shift = (torch.inverse(linear) @ (driving_shift - offset).unsqueeze(-1)).squeeze(-1)
    transformed_affine = torch.inverse(linear) @ driving_affine
    assert equivariance_shift_loss(driving_shift, transform.warp_coordinates(transformed_shift)) < 1e-6
    jacobian = transform.jacobian(transformed_shift)
    assert equivariance_affine_loss(driving_affine, jacobian, transformed_affine) < 1e-5
    # An axis flip of the transformed frame's SVD: forgiven with revert_axis_swap, not without.
    assert equivariance_affine_loss(driving_affine, jacobian, -transformed_affine) < 1e-5
    flipped = equivariance_affine_loss(driving_affine, jacobian, -transformed_affine, revert_axis_swap=False)
    assert abs(flipped.item() - 1.0) < 1e-5  # |I − (−I)| = 2 on the diagonal, mean over 4 entries


class _StubVgg(torch.nn.Module):
    """Five 'feature maps' of the image: enough to exercise the perceptual loss cheaply."""

    def forward(self, x):
        return [x * (i + 1) for i in range(5)]


TRAIN_PARAMS = {"scales": [1, 0.5, 0.25], "transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
                "loss_weights": {"perceptual": [10, 10, 10, 10, 10], "equivariance_shift": 10, "equivariance_affine": 10}}


def test_reconstruction_model_losses(ref):
    nets = loaded(ref, mode="train")
    model = ReconstructionModel(nets["region_predictor"], nets["bg_predictor"], nets["generator"],
                                copy.deepcopy(TRAIN_PARAMS), vgg=_StubVgg(),
                                transform_generator=torch.Generator().manual_seed(0))
    x = {"source": ref["inputs"]["train_source"], "driving": ref["inputs"]["train_driving"]}
    losses, generated = model(x)
    assert set(losses) == {"perceptual", "equivariance_shift", "equivariance_affine"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    assert {"prediction", "transformed_frame", "transformed_region_params", "source_region_params"} <= set(generated)
    sum(losses.values()).backward()
    for name in ("region_predictor", "bg_predictor", "generator"):
        grads = [p.grad for p in nets[name].parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), name
    # Perceptual term by hand: Σ_scales Σ_layers 10·(layer+1)·mean|pyramid(pred) − pyramid(driving)|.
    pyramid = model.pyramid
    with torch.no_grad():
        pred, real = pyramid(generated["prediction"]), pyramid(x["driving"])
        expected = sum(10 * (i + 1) * (pred[k] - real[k]).abs().mean() for k in pred for i in range(5))
    torch.testing.assert_close(losses["perceptual"].detach(), expected)


def test_reconstruction_model_zero_weights_skip_terms(ref):
    nets = loaded(ref)
    params = copy.deepcopy(TRAIN_PARAMS)
    params["loss_weights"] = {"perceptual": [0, 0, 0, 0, 0], "equivariance_shift": 0, "equivariance_affine": 0}
    model = ReconstructionModel(nets["region_predictor"], nets["bg_predictor"], nets["generator"], params)
    assert model.vgg is None
    with torch.no_grad():
        losses, generated = model({"source": ref["inputs"]["source"], "driving": ref["inputs"]["driving"]})
    assert losses == {} and "transformed_frame" not in generated


def test_random_scale():
    params = {"shift": torch.rand(3, 4, 2), "affine": torch.randn(3, 4, 2, 2)}
    same = random_scale(params, 0.0)
    torch.testing.assert_close(same["shift"], params["shift"])
    torch.testing.assert_close(same["affine"], params["affine"])
    scaled = random_scale(params, 0.25, generator=torch.Generator().manual_seed(0))
    ratio = scaled["shift"] / params["shift"]  # one factor per sample and axis, in [0.75, 1.25]
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))
    assert ((ratio >= 0.75) & (ratio <= 1.25)).all()
    torch.testing.assert_close(scaled["affine"], ratio[:, :, :, None] * params["affine"])


def test_avd_reconstruction_loss_values():
    target = {"shift": torch.zeros(2, 3, 2), "affine": torch.zeros(2, 3, 2, 2)}
    rec = {"shift": torch.full((2, 3, 2), 0.5), "affine": torch.full((2, 3, 2, 2), -2.0)}
    losses = avd_reconstruction_loss(rec, target, lambda_shift=2, lambda_affine=0.5)
    assert losses["rec_shift"].item() == 1.0 and losses["rec_affine"].item() == 1.0


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_avd_training_model(ref, mode):
    nets = loaded(ref)
    rp, avd = nets["region_predictor"], nets["avd_network"].train()
    model = AVDTrainingModel(rp, avd, {"random_scale": 0.25, "lambda_shift": 1, "lambda_affine": 1},
                             region_predictor_mode=mode, generator=torch.Generator().manual_seed(0)).train()
    x = {"source": torch.cat([ref["inputs"]["source"]] * 2 + [ref["inputs"]["driving"]] * 2),
         "driving": torch.cat([ref["inputs"]["driving"]] * 2 + [ref["inputs"]["source"]] * 2)}
    losses, rec = model(x)
    assert set(losses) == {"rec_shift", "rec_affine"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in avd.parameters())
    assert all(p.grad is None for p in rp.parameters())
    key = "predictor.encoder.down_blocks.0.norm.running_mean"
    moved = not torch.equal(rp.state_dict()[key], ref["checkpoint"]["region_predictor"][key])
    assert moved == (mode == "train")


# --- published configs --------------------------------------------------------------------------


@pytest.mark.parametrize("name", CONFIGS)
def test_published_configs_build(name):
    config = yaml.safe_load((ROOT / "config" / "mraa" / f"{name}.yaml").read_text())
    nets = build(config["model_params"])
    mp = config["model_params"]
    assert nets["region_predictor"].regions.padding == ((0, 0) if "pad" in mp["region_predictor_params"] else (3, 3))
    assert config["train_params"]["lr"] == 2.0e-4 and config["train_avd_params"]["lr"] == 1.0e-3
    assert config["train_params"]["loss_weights"] == {"perceptual": [10] * 5, "equivariance_shift": 10,
                                                      "equivariance_affine": 10}
    assert config["animate_params"]["mode"] == "avd"
