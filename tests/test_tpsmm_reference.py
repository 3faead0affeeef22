"""TPSMM (modules/tpsmm/) against the tensors recorded from the published implementation
(../shared/reference/tpsmm-a.pt, described in MOTION.md), plus the encode/decode split, the training
losses and the animation helpers."""
import inspect
import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from modules.perceptual import VGGWeightsMissing, Vgg19
from modules.tpsmm import AVDNetwork, BGMotionPredictor, DenseMotionNetwork, InpaintingNetwork, KPDetector
from modules.tpsmm.animation import animation_kp, relative_kp
from modules.tpsmm.model import (AVDFullModel, GeneratorFullModel, bg_loss, build_avd_optimizer, build_optimizers,
                                 dropout_schedule, random_scale, warp_loss)
from modules.tpsmm.util import TPS, make_coordinate_grid

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "reference" / "tpsmm-a.pt"
NETWORKS = ("kp_detector", "bg_predictor", "dense_motion_network", "inpainting_network", "avd_network")


@pytest.fixture(scope="module")
def ref():
    if not FIXTURE.is_file():
        pytest.fail(f"TPSMM reference fixture missing: {FIXTURE} (shared/ must sit beside the clone)")
    return torch.load(FIXTURE, weights_only=True)


def build(ref):
    """The five networks as the reference run.py builds them, checkpoint loaded strictly, eval mode."""
    mp = ref["model_params"]
    cp = mp["common_params"]
    nets = {
        "kp_detector": KPDetector(**cp),
        "bg_predictor": BGMotionPredictor(),
        "dense_motion_network": DenseMotionNetwork(**cp, **mp["dense_motion_params"]),
        "inpainting_network": InpaintingNetwork(**mp["generator_params"], **cp),
        "avd_network": AVDNetwork(num_tps=cp["num_tps"], **mp["avd_network_params"]),
    }
    for name, net in nets.items():
        net.load_state_dict(ref["checkpoint"][name], strict=True)
        net.eval()
    return nets


@pytest.fixture(scope="module")
def nets(ref):
    return build(ref)


def lookup(tree, path):
    for key in path.split("/"):
        tree = tree[key]
    return tree


def assert_close(ref, path, actual, expected=None):
    """Compare with atol = max(1e-5, 4·float64_gap[path]) (MOTION.md), recursing into lists/dicts."""
    expected = lookup(ref, path) if expected is None else expected
    if isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_close(ref, f"{path}[{i}]", a, e)
        return
    if isinstance(expected, dict):
        for key in expected:
            assert_close(ref, f"{path}/{key}", actual[key], expected[key])
        return
    assert actual.shape == expected.shape, path
    atol = max(1e-5, 4 * ref["float64_gap"][path])
    diff = (actual - expected).abs().max().item()
    assert diff <= atol, f"{path}: max abs diff {diff:.3g} > {atol:.3g}"


@pytest.fixture(scope="module")
def eval_run(ref, nets):
    """Every eval-mode reference call of MOTION.md's table, under no_grad."""
    S, D = ref["inputs"]["source"], ref["inputs"]["driving"]
    dm, inp = nets["dense_motion_network"], nets["inpainting_network"]
    out = {}
    with torch.no_grad():
        kp_s, kp_d = nets["kp_detector"](S), nets["kp_detector"](D)
        bg_param = nets["bg_predictor"](S, D)
        dense = dm(source_image=S, kp_driving=kp_d, kp_source=kp_s, bg_param=bg_param, dropout_flag=False)
        down = dm.down(S)
        no_bg = dm(source_image=S, kp_driving=kp_d, kp_source=kp_s, bg_param=None, dropout_flag=False)
        out.update({
            "eval/kp_source": kp_s, "eval/kp_driving": kp_d, "eval/bg_param": bg_param,
            "eval/dense_motion": dense,
            "eval/dense_motion_internals/source_down": down,
            "eval/dense_motion_internals/heatmap_representation": dm.create_heatmap_representations(down, kp_d, kp_s),
            "eval/dense_motion_internals/transformations": dm.create_transformations(down, kp_d, kp_s, bg_param),
            "eval/inpainting": inp(S, dense),
            "eval/dense_motion_no_bg": no_bg,
            "eval/inpainting_no_bg/prediction": inp(S, no_bg)["prediction"],
            "eval/get_encode": inp.get_encode(D, dense["occlusion_map"]),
            "eval/avd": nets["avd_network"](kp_s, kp_d),
        })
        drop = ref["inputs"]["dropout"]
        torch.manual_seed(drop["seed"])
        dropped = dm(source_image=S, kp_driving=kp_d, kp_source=kp_s, bg_param=bg_param, dropout_flag=True,
                     dropout_p=drop["p"])
        out["dropout/dense_motion"] = dropped
        out["dropout/prediction"] = inp(S, dropped)["prediction"]
        torch.manual_seed(drop["seed"])
        out["dropout/dropout_softmax"] = dm.dropout_softmax(drop["logits"], drop["p"])
    return out


EVAL_KEYS = ["eval/kp_source", "eval/kp_driving", "eval/bg_param", "eval/dense_motion",
             "eval/dense_motion_internals/source_down", "eval/dense_motion_internals/heatmap_representation",
             "eval/dense_motion_internals/transformations", "eval/inpainting", "eval/dense_motion_no_bg",
             "eval/inpainting_no_bg/prediction", "eval/get_encode", "eval/avd", "dropout/dense_motion",
             "dropout/prediction", "dropout/dropout_softmax"]


@pytest.mark.parametrize("path", EVAL_KEYS)
def test_eval_outputs(ref, eval_run, path):
    assert_close(ref, path, eval_run[path])


def test_every_recorded_key_is_checked(ref):
    covered = ("eval/", "dropout/", "tps_kp/", "tps_random/", "animation_kp/", "train_mode/")
    assert all(path.startswith(covered) for path in ref["float64_gap"])
    assert {k for k in ref if k not in ("model", "variant", "seed", "reference", "versions", "notes",
                                        "model_params", "checkpoint", "inputs", "float64_gap")} \
        == {p.rstrip("/") for p in covered}
    assert set(ref["eval"]) == {p.split("/")[1] for p in EVAL_KEYS if p.startswith("eval/")}


def test_bg_param_is_affine(eval_run):
    bg_param = eval_run["eval/bg_param"]
    assert torch.equal(bg_param[:, 2], torch.tensor([[0.0, 0.0, 1.0]]))


def test_tps_kp(ref):
    inputs = ref["inputs"]["tps_kp"]
    tps = TPS(mode="kp", bs=2, kp_1=inputs["kp_1"], kp_2=inputs["kp_2"])
    for name in ("theta", "control_points", "control_params"):
        assert_close(ref, f"tps_kp/{name}", getattr(tps, name))
    assert_close(ref, "tps_kp/warped", tps.warp_coordinates(inputs["coordinates"]))
    assert_close(ref, "tps_kp/grid", tps.transform_frame(torch.zeros(2, 3, *inputs["frame_size"])))


def test_tps_random(ref):
    inputs = ref["inputs"]["tps_random"]
    tps = TPS(mode="random", bs=2, **inputs["transform_params"])
    tps.theta, tps.control_params = inputs["theta"], inputs["control_params"]
    assert_close(ref, "tps_random/control_points", tps.control_points)
    assert_close(ref, "tps_random/warped", tps.warp_coordinates(inputs["coordinates"]))
    grid = tps.transform_frame(inputs["frame"])
    assert_close(ref, "tps_random/grid", grid)
    frame = F.grid_sample(inputs["frame"], grid, padding_mode="reflection", align_corners=True)
    assert_close(ref, "tps_random/transformed_frame", frame)


def test_tps_random_identity_parameters_give_identity_warp():
    tps = TPS(mode="random", bs=2, sigma_affine=0.05, sigma_tps=0.005, points_tps=5)
    tps.theta = torch.eye(2, 3).expand(2, 2, 3)
    tps.control_params = torch.zeros(2, 1, 25)
    points = torch.rand(2, 7, 2) * 2 - 1
    assert torch.allclose(tps.warp_coordinates(points), points, atol=1e-7)
    with pytest.raises(ValueError):
        TPS(mode="affine", bs=1)


def test_animation_kp(ref, nets):
    inputs = ref["inputs"]["animation_kp"]
    kp = relative_kp(kp_source=inputs["kp_source"], kp_driving=inputs["kp_driving"],
                     kp_driving_initial=inputs["kp_driving_initial"])
    assert_close(ref, "animation_kp/relative", kp)
    with torch.no_grad():
        avd = animation_kp(inputs["kp_source"], inputs["kp_driving"], mode="avd", avd_network=nets["avd_network"])
    assert_close(ref, "animation_kp/avd", avd)


def test_relative_kp_without_motion_returns_source_and_scales_with_area():
    source = {"fg_kp": torch.rand(1, 20, 2) * 2 - 1}
    initial = {"fg_kp": torch.rand(1, 20, 2) * 2 - 1}
    assert torch.allclose(relative_kp(source, initial, initial)["fg_kp"], source["fg_kp"])
    # Driving twice as large as the source: motion is halved. Batches of driving frames share the scale.
    source = {"fg_kp": initial["fg_kp"] / 2}
    moved = {"fg_kp": torch.stack([initial["fg_kp"][0] + 0.2, initial["fg_kp"][0] - 0.4])}
    out = relative_kp(source, moved, initial)["fg_kp"]
    assert torch.allclose(out - source["fg_kp"], torch.tensor([0.1, -0.2])[:, None, None].expand(2, 20, 2),
                          atol=1e-6)
    assert animation_kp(source, moved, mode="standard") is moved
    with pytest.raises(ValueError):
        animation_kp(source, moved, mode="relative")


def test_train_mode(ref):
    nets = build(ref)  # fresh copies: train-mode forwards update the BatchNorm running statistics
    for net in nets.values():
        net.train()
    S, D = ref["inputs"]["train_source"], ref["inputs"]["train_driving"]
    with torch.no_grad():
        kp_s, kp_d = nets["kp_detector"](S), nets["kp_detector"](D)
        bg_param = nets["bg_predictor"](S, D)
        dense = nets["dense_motion_network"](S, kp_d, kp_s, bg_param, dropout_flag=False)
        generated = nets["inpainting_network"](S, dense)
        avd_in = ref["inputs"]["train_avd"]
        avd = nets["avd_network"](avd_in["kp_source"], avd_in["kp_random"])
    assert_close(ref, "train_mode/kp_source", kp_s)
    assert_close(ref, "train_mode/kp_driving", kp_d)
    assert_close(ref, "train_mode/bg_param", bg_param)
    assert_close(ref, "train_mode/dense_motion", dense)
    assert_close(ref, "train_mode/prediction", generated["prediction"])
    assert_close(ref, "train_mode/deformed", generated["deformed"])
    assert_close(ref, "train_mode/avd", avd)


def test_encode_decode_equals_forward_for_a_batch_of_driving_frames(ref, nets):
    S, D = ref["inputs"]["source"], ref["inputs"]["driving"]
    drivings = torch.cat([D, S, D.flip(3)])
    kp, dm, inp = nets["kp_detector"], nets["dense_motion_network"], nets["inpainting_network"]
    with torch.no_grad():
        kp_s = kp(S)
        kp_d = kp(drivings)
        kp_s3 = {"fg_kp": kp_s["fg_kp"].expand(3, -1, -1)}
        dense = dm(source_image=S.expand(3, -1, -1, -1), kp_driving=kp_d, kp_source=kp_s3)
        encoded = inp.encode(S)  # one target face, batch 1
        batched = inp.decode(S, encoded, dense)
        full = inp(S.expand(3, -1, -1, -1), dense)
        single = [inp(S, {k: (v[i:i + 1] if torch.is_tensor(v) else [m[i:i + 1] for m in v])
                          for k, v in dense.items()}) for i in range(3)]
    for key in ("prediction", "deformed"):
        assert torch.allclose(batched[key], full[key], atol=1e-6, rtol=0), key
        assert torch.allclose(batched[key], torch.cat([s[key] for s in single]), atol=1e-6, rtol=0), key
    for b, f in zip(batched["warped_encoder_maps"], full["warped_encoder_maps"]):
        assert torch.allclose(b, f, atol=1e-6, rtol=0)
    assert not torch.allclose(batched["prediction"][0], batched["prediction"][2], atol=1e-3)
    with pytest.raises(ValueError):
        inp.decode(S.expand(2, -1, -1, -1), [e.expand(2, -1, -1, -1) for e in encoded], dense)


# ---------------------------------------------------------------- training losses

TRAIN_PARAMS = {
    "scales": [1, 0.5, 0.25], "lr_generator": 2.0e-4, "epoch_milestones": [70, 90],
    "dropout_epoch": 2, "dropout_maxp": 0.3, "dropout_startp": 0.1, "dropout_inc_epoch": 10, "bg_start": 1,
    "transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
    "loss_weights": {"perceptual": [10, 10, 10, 10, 10], "equivariance_value": 10, "warp_loss": 10, "bg": 10},
}


def test_dropout_schedule_matches_the_published_formula():
    vox = dict(dropout_epoch=35, dropout_maxp=0.3, dropout_startp=0.1, dropout_inc_epoch=10)
    assert dropout_schedule(0, **vox) == (True, 0.1)
    flag, p = dropout_schedule(3, **vox)
    assert flag and math.isclose(p, 0.19)
    assert dropout_schedule(7, **vox) == (True, 0.3)  # 0.31 capped at maxp
    assert dropout_schedule(34, **vox) == (True, 0.3)
    assert dropout_schedule(35, **vox) == (False, 0)


def test_bg_loss_is_zero_for_inverse_affines():
    A = torch.tensor([[[1.1, 0.1, 0.05], [-0.2, 0.9, 0.1], [0, 0, 1]]])
    assert bg_loss(A, torch.inverse(A)).item() < 1e-6
    assert math.isclose(bg_loss(A, A).item(), (torch.eye(3) - A @ A).abs().mean().item(), rel_tol=1e-6)


def test_warp_loss_vanishes_for_identity_motion_on_the_same_frame(ref, nets):
    """get_encode(S) and the identity-warped encoding of S are the same features under the same masks."""
    S = ref["inputs"]["source"]
    inp = nets["inpainting_network"]
    torch.manual_seed(0)
    occlusion = [torch.rand(1, 1, s, s) for s in (8, 16, 32, 64)]
    identity = make_coordinate_grid((16, 16), S.dtype)[None]
    dense = {"deformation": identity, "occlusion_map": occlusion, "contribution_maps": None,
             "deformed_source": None}
    with torch.no_grad():
        decoded = inp(S, dense)["warped_encoder_maps"]
        encoded = inp.get_encode(S, occlusion)
        assert warp_loss(encoded, decoded).item() < 1e-5
        shifted = dict(dense, deformation=identity + torch.tensor([0.2, 0.0]))
        assert warp_loss(encoded, inp(S, shifted)["warped_encoder_maps"]).item() > 1e-2


def tiny_networks(bg=True):
    torch.manual_seed(0)
    common = {"num_tps": 2, "num_channels": 3, "bg": bg, "multi_mask": True}
    return (KPDetector(**common), BGMotionPredictor() if bg else None,
            DenseMotionNetwork(block_expansion=4, num_blocks=3, max_features=16, scale_factor=0.25, **common),
            InpaintingNetwork(block_expansion=4, max_features=16, num_down_blocks=3, **common))


@pytest.fixture(scope="module")
def vgg():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VGGWeightsMissing)  # no ImageNet weights here: a fixed random VGG19
        return Vgg19()


def test_generator_full_model_losses(vgg):
    kp, bg, dm, inp = tiny_networks()
    model = GeneratorFullModel(kp, bg, dm, inp, TRAIN_PARAMS, vgg=vgg)
    model.train()
    torch.manual_seed(1)
    x = {"source": torch.rand(2, 3, 64, 64), "driving": torch.rand(2, 3, 64, 64)}

    losses, generated = model(x, epoch=0)  # before bg_start: no background motion, dropout on
    assert set(losses) == {"perceptual", "equivariance_value", "warp_loss"}
    assert generated["transformed_frame"].shape == (2, 3, 64, 64)
    assert generated["transformed_kp"]["fg_kp"].shape == (2, 10, 2)

    losses, generated = model(x, epoch=1)
    assert set(losses) == {"perceptual", "equivariance_value", "warp_loss", "bg"}
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    assert all(losses[k].item() > 0 for k in ("perceptual", "equivariance_value", "warp_loss"))
    # The bg predictor starts at the identity (zero fc weight), so A·A' = I exactly.
    assert losses["bg"].item() == 0
    sum(losses.values()).backward()
    for net in (kp, bg, dm, inp):
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
    assert all(p.grad is None for p in vgg.parameters())


def test_generator_full_model_without_bg_and_zero_weights():
    kp, bg, dm, inp = tiny_networks(bg=False)
    params = dict(TRAIN_PARAMS, loss_weights={"perceptual": [0] * 5, "equivariance_value": 0, "warp_loss": 10,
                                              "bg": 10})
    model = GeneratorFullModel(kp, bg, dm, inp, params)
    assert model.vgg is None
    x = {"source": torch.rand(1, 3, 64, 64), "driving": torch.rand(1, 3, 64, 64)}
    losses, generated = model(x, epoch=5)
    assert set(losses) == {"warp_loss"}
    assert "transformed_frame" not in generated


def test_avd_stage(ref):
    nets = build(ref)
    kp, avd = nets["kp_detector"], nets["avd_network"]
    avd.train()
    model = AVDFullModel(kp, avd, {"random_scale": 0.25, "lambda_shift": 1})
    S, D = ref["inputs"]["train_source"], ref["inputs"]["train_driving"]
    losses, out = model({"source": S, "driving": D})
    assert set(losses) == {"rec_kp"} and torch.isfinite(losses["rec_kp"])
    expected = (out["kp_driving"]["fg_kp"] - out["rec"]["fg_kp"]).abs().mean()
    assert torch.allclose(losses["rec_kp"], expected)
    losses["rec_kp"].backward()
    assert all(p.grad is None for p in kp.parameters())
    assert all(p.grad is not None for p in avd.parameters())
    optimizer, scheduler = build_avd_optimizer({"lr": 1e-3, "epoch_milestones": [40, 50]}, avd)
    assert optimizer.param_groups[0]["betas"] == (0.5, 0.999) and scheduler.milestones == {40: 1, 50: 1}


def test_avd_stage_keypoints_in_eval_mode_unless_published(ref):
    nets = build(ref)
    kp, avd = nets["kp_detector"], nets["avd_network"]
    kp.train()
    S, D = ref["inputs"]["train_source"], ref["inputs"]["train_driving"]
    running_mean = kp.fg_encoder.bn1.running_mean.clone()
    _, out = AVDFullModel(kp, avd, {"random_scale": 0.25, "lambda_shift": 1})({"source": S, "driving": D})
    assert kp.training and torch.equal(kp.fg_encoder.bn1.running_mean, running_mean)
    with torch.no_grad():
        assert torch.equal(out["kp_source"]["fg_kp"], nets_eval_kp(kp, S))
    _, out = AVDFullModel(kp, avd, {"random_scale": 0.25, "lambda_shift": 1}, kp_detector_mode="as_is")(
        {"source": S, "driving": D})
    assert not torch.equal(kp.fg_encoder.bn1.running_mean, running_mean)  # the published drift
    assert_close(ref, "train_mode/kp_source", out["kp_source"])


def nets_eval_kp(kp, frames):
    kp.eval()
    try:
        return kp(frames)["fg_kp"]
    finally:
        kp.train()


def test_random_scale_is_a_per_sample_diagonal_scaling():
    kp = {"fg_kp": torch.rand(4, 10, 2) * 2 - 1}
    scaled = random_scale(kp, 0.25, generator=torch.Generator().manual_seed(3))["fg_kp"]
    ratio = scaled / kp["fg_kp"]
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5)
    assert ((ratio >= 0.75 - 1e-6) & (ratio <= 1.25 + 1e-6)).all()


def test_build_optimizers_follows_the_published_train_py():
    kp, bg, dm, inp = tiny_networks()
    optimizer, optimizer_bg, schedulers = build_optimizers(TRAIN_PARAMS, kp, dm, inp, bg)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (2e-4, (0.5, 0.999), 1e-4)
    assert len(group["params"]) == sum(len(list(m.parameters())) for m in (kp, dm, inp))
    assert len(optimizer_bg.param_groups[0]["params"]) == len(list(bg.parameters()))
    assert [s.milestones for s in schedulers] == [{70: 1, 90: 1}] * 2


# ---------------------------------------------------------------- published configs

@pytest.mark.parametrize("name", ["vox-256", "taichi-256", "ted-384", "mgif-256"])
def test_published_configs_fit_the_constructors(name):
    config = yaml.safe_load((ROOT / "config" / "tpsmm" / f"{name}.yaml").read_text())
    mp = config["model_params"]
    cp = mp["common_params"]
    inspect.signature(KPDetector).bind(**cp)
    inspect.signature(DenseMotionNetwork).bind(**cp, **mp["dense_motion_params"])
    inspect.signature(InpaintingNetwork).bind(**mp["generator_params"], **cp)
    inspect.signature(AVDNetwork).bind(num_tps=cp["num_tps"], **mp["avd_network_params"])
    train = config["train_params"]
    assert cp["num_tps"] == 10 and train["lr_generator"] == 2e-4 and train["scales"] == [1, 0.5, 0.25, 0.125]
    assert cp["bg"] is (name != "mgif-256")
    assert set(config["train_avd_params"]) >= {"lr", "epoch_milestones", "random_scale", "lambda_shift"}


def test_single_occlusion_mask_variant_runs():
    """multi_mask False: one occlusion map at the dense-motion resolution, resized where it is used."""
    torch.manual_seed(0)
    common = {"num_tps": 2, "num_channels": 3, "bg": False, "multi_mask": False}
    dm = DenseMotionNetwork(block_expansion=4, num_blocks=3, max_features=16, **common).eval()
    inp = InpaintingNetwork(block_expansion=4, max_features=16, num_down_blocks=3, **common).eval()
    S = torch.rand(2, 3, 64, 64)
    kp = {"fg_kp": torch.rand(2, 10, 2) * 2 - 1}
    with torch.no_grad():
        dense = dm(S, kp, kp)
        out = inp(S, dense)
    assert [m.shape for m in dense["occlusion_map"]] == [(2, 1, 16, 16)]
    assert out["prediction"].shape == (2, 3, 64, 64)
    assert [m.shape[1:] for m in out["warped_encoder_maps"]] == [(16, 8, 8), (16, 16, 16), (8, 32, 32), (4, 64, 64)]
