"""Training losses on the tiny config: every term finite, every network receives gradients."""
import warnings

import pytest
import torch
import torchvision

from configuration import build_networks, load_config
from modules.geometry import Transform, normalized_to_pixels, pixels_to_normalized
from modules.losses import equivariance_jacobian_loss
from modules.model import DiscriminatorFullModel, GeneratorFullModel
from modules.perceptual import Vgg19, VGGWeightsMissing


@pytest.fixture(scope="module")
def random_vgg():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VGGWeightsMissing)
        return Vgg19()


def tiny(keypoint_mode=None, **train_overrides):
    config = load_config("config/tiny.yaml")
    if keypoint_mode is not None:
        config["model_params"]["common_params"]["keypoint_mode"] = keypoint_mode
    config["train_params"].update(train_overrides)
    return config


def face_batch(reference, size=64):
    frames = torch.stack([reference["source_image"], reference["driving_image"]]).permute(0, 3, 1, 2)
    frames = torch.nn.functional.interpolate(frames, size=(size, size), mode="area")
    prior = torch.stack([reference["prior_kp_source"], reference["prior_kp_driving"]]) * size / 256
    return {"source": frames, "driving": frames.flip(0), "source_prior": prior, "driving_prior": prior.flip(0)}


@pytest.mark.parametrize("keypoint_mode", ["prior", "learned"])
def test_losses_finite_and_all_networks_get_gradients(reference, random_vgg, keypoint_mode):
    torch.manual_seed(0)
    config = tiny(keypoint_mode)
    kp, gen, disc = build_networks(config["model_params"])
    generator_model = GeneratorFullModel(kp, gen, disc, config["train_params"], vgg=random_vgg)
    discriminator_model = DiscriminatorFullModel(kp, gen, disc, config["train_params"])
    batch = face_batch(reference)
    losses, generated = generator_model(batch)
    assert set(losses) == {"perceptual", "gen_gan", "feature_matching", "equivariance_value", "equivariance_jacobian"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for name, module in (("kp_detector", kp), ("generator", gen)):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert any(g.abs().sum() > 0 for g in grads), name
    disc.zero_grad()
    disc_losses = discriminator_model(batch, generated)
    disc_losses["disc_gan"].backward()
    grads = [p.grad for p in disc.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_corrected_prior_makes_value_equivariance_vanish(reference, random_vgg):
    """With the prior, keypoint values are not learned: mapped correctly, the transformed frame's
    prior lands back on the original and the value term is ~0; the published behaviour leaves a
    constant |p − T(p)| that no training can reduce."""
    torch.manual_seed(1)
    batch = face_batch(reference)
    values = {}
    for mode in ("corrected", "reference"):
        config = tiny(prior_equivariance=mode)
        config["train_params"]["loss_weights"].update(generator_gan=0, perceptual=[0, 0, 0, 0, 0])
        kp, gen, disc = build_networks(config["model_params"])
        model = GeneratorFullModel(kp, gen, disc, config["train_params"])
        torch.manual_seed(7)  # the same random warp for both modes
        losses, generated = model(batch)
        values[mode] = losses["equivariance_value"].item() / 10
        if mode == "reference":
            transform_prior = generated["transformed_prior"]
            assert torch.equal(transform_prior, batch["driving_prior"])
    assert values["corrected"] < 1e-5
    assert values["reference"] > 1e-3


def test_jacobian_equivariance_zero_for_consistent_jacobians():
    transform = Transform(1, theta=torch.tensor([[[1.1, 0.2, 0.0], [-0.1, 0.9, 0.0]]]))
    points = torch.zeros(1, 3, 2)
    warp_jacobian = transform.jacobian(points).detach()
    kp_jacobian = torch.randn(1, 3, 2, 2) + 2 * torch.eye(2)
    transformed = torch.inverse(warp_jacobian) @ kp_jacobian  # J' with ∇T J' = J exactly
    assert equivariance_jacobian_loss(kp_jacobian, warp_jacobian, transformed) < 1e-6


def test_vgg_weight_policy(tmp_path):
    with pytest.warns(VGGWeightsMissing, match="FIXED RANDOM"):
        random_a = Vgg19()
    with pytest.warns(VGGWeightsMissing):
        random_b = Vgg19()
    assert random_a.source == "random"
    x = torch.rand(1, 3, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(random_a(x), random_b(x)))  # fixed, not fresh noise

    torch.manual_seed(3)
    full = torchvision.models.vgg19()  # stands in for the ImageNet file: same layout, other values
    path = tmp_path / "vgg19.pth"
    torch.save(full.state_dict(), path)
    loaded = Vgg19(str(path))
    assert loaded.source == f"imagenet:{path}"
    normalized = (x - loaded.mean) / loaded.std
    taps = [1, 6, 11, 20, 29]
    out, expected = normalized, []
    for index, layer in enumerate(full.features[:30]):
        out = layer(out)
        if index in taps:
            expected.append(out)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(loaded(x), expected))
    with pytest.raises(FileNotFoundError, match="vgg_weights"):
        Vgg19(str(tmp_path / "missing.pth"))
