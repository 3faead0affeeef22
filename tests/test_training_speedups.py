"""The faster training computations give the published numbers (issue 7).

The oracle is benchmarks/published.py: the published step order rebuilt from the project's modules,
which is also the benchmarks' baseline. The separable blur changes sums only by float rounding; the
frozen discriminator pass changes nothing at all (compared bit for bit).
"""
import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

from benchmarks.published import PublishedDiscriminatorFullModel, PublishedGeneratorFullModel, published_blur
from configuration import build_networks, load_config
from modules.blocks import AntiAliasInterpolation2d, band_matrix
from modules.model import DiscriminatorFullModel, GeneratorFullModel, frozen
from modules.perceptual import ImagePyramid, Vgg19, VGGWeightsMissing

SCALES = (0.5, 0.25, 0.125)


@pytest.fixture(scope="module")
def random_vgg():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VGGWeightsMissing)
        return Vgg19()


def published(module):
    return published_blur(copy.deepcopy(module))


def common(ours, theirs):
    """Sizes not divisible by 1/scale: the published nearest interpolation keeps ⌊H·scale⌋ rows, the
    project (before and after issue 7) ⌈H·scale⌉; the rows both keep are the same pixels."""
    h, w = theirs.shape[-2:]
    assert ours.shape[:-2] == theirs.shape[:-2] and ours.shape[-2] - h in (0, 1) and ours.shape[-1] - w in (0, 1)
    return ours[..., :h, :w]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 63, 70), (1, 1, 256, 256)])
def test_strided_blur_is_the_published_computation(scale, shape):
    module = AntiAliasInterpolation2d(shape[1], scale)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    ours, theirs = module(x), published(module)(x)
    assert (common(ours, theirs) - theirs).abs().max() <= 1e-6


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 63, 70), (1, 3, 256, 256)])
def test_separable_blur_equals_the_published_one_forward_and_backward(scale, shape):
    module = AntiAliasInterpolation2d(shape[1], scale, separable=True)
    assert module.profile.numel() == module.weight.shape[-1]
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1), requires_grad=True)
    weights = torch.rand(published(module)(x).shape, generator=torch.Generator().manual_seed(2))
    theirs = published(module)(x)
    (grad_theirs,) = torch.autograd.grad((theirs * weights).sum(), x)
    ours = common(module(x), theirs)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), x)
    assert (ours - theirs).abs().max() <= 2e-6
    assert (grad_ours - grad_theirs).abs().max() <= 2e-6 * grad_theirs.abs().max()
    # And no less accurate than the convolution against the exact (float64) result.
    exact = published(module).double()(x.detach().double())
    assert (ours.double() - exact).abs().max() <= (theirs.double() - exact).abs().max() + 1e-7


def test_band_matrix_is_a_padded_strided_convolution():
    profile = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)
    x = torch.arange(7, dtype=torch.float64)
    expected = F.conv1d(F.pad(x.view(1, 1, -1), (1, 1)), profile.view(1, 1, -1), stride=2).flatten()
    assert torch.allclose(band_matrix(profile, 7, 2, 1) @ x, expected)


def test_a_kernel_that_is_not_separable_uses_the_convolution():
    module = AntiAliasInterpolation2d(3, 0.25, separable=True)
    state = module.state_dict()
    state["weight"] = torch.rand(state["weight"].shape, generator=torch.Generator().manual_seed(3))
    module.load_state_dict(state)
    assert module.profile.numel() == 0
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(module(x), published(module)(x), atol=1e-6)
    # A separable kernel loaded back restores the fast path.
    module.load_state_dict(AntiAliasInterpolation2d(3, 0.25).state_dict())
    assert module.profile.numel() == module.weight.shape[-1]


def test_frozen_restores_requires_grad():
    layer = torch.nn.Linear(2, 2)
    layer.bias.requires_grad_(False)
    with frozen(layer):
        assert not any(p.requires_grad for p in layer.parameters())
    assert layer.weight.requires_grad and not layer.bias.requires_grad


def face_batch(reference, size=64):
    frames = torch.stack([reference["source_image"], reference["driving_image"]]).permute(0, 3, 1, 2)
    frames = F.interpolate(frames, size=(size, size), mode="area")
    prior = torch.stack([reference["prior_kp_source"], reference["prior_kp_driving"]]) * size / 256
    return {"source": frames, "driving": frames.flip(0), "source_prior": prior, "driving_prior": prior.flip(0)}


def one_step(networks, train_params, vgg, batch, kind, published_pyramid=True):
    """Generator losses + backward, then the discriminator loss + backward, on copies of ``networks``.
    → (loss values, generator-side gradients, discriminator gradients, discriminator state)."""
    kp, gen, disc = copy.deepcopy(networks)
    if kind == "project":
        gen_full = GeneratorFullModel(kp, gen, disc, train_params, vgg=vgg)
        disc_full = DiscriminatorFullModel(kp, gen, disc, train_params)
    else:
        gen_full = PublishedGeneratorFullModel(kp, gen, disc, train_params, vgg)
        disc_full = PublishedDiscriminatorFullModel(kp, gen, disc, train_params)
        if not published_pyramid:
            gen_full.pyramid = ImagePyramid(train_params["scales"], gen.num_channels)
            disc_full.pyramid = ImagePyramid(train_params["scales"], gen.num_channels)
    torch.manual_seed(5)  # the equivariance warp
    losses, generated = gen_full(batch)
    sum(losses.values()).backward()
    grads = {f"{name}.{key}": p.grad.clone() for name, module in (("kp", kp), ("gen", gen))
             for key, p in module.named_parameters()}
    disc.zero_grad()
    disc_losses = disc_full(batch, generated)
    sum(disc_losses.values()).backward()
    disc_grads = {key: p.grad.clone() for key, p in disc.named_parameters()}
    values = {k: v.item() for k, v in {**losses, **disc_losses}.items()}
    return values, grads, disc_grads, disc.state_dict()


@pytest.fixture(scope="module")
def tiny_training(reference):
    config = load_config("config/tiny.yaml")
    torch.manual_seed(0)
    networks = build_networks(config["model_params"])
    for module in networks:
        module.train()
    return networks, config["train_params"], face_batch(reference)


def test_frozen_discriminator_pass_changes_nothing(tiny_training, random_vgg):
    """Same pyramid on both sides: losses, every gradient and the discriminator's spectral-norm state
    are bit for bit those of the published order."""
    networks, train_params, batch = tiny_training
    ours = one_step(networks, train_params, random_vgg, batch, "project")
    theirs = one_step(networks, train_params, random_vgg, batch, "published", published_pyramid=False)
    assert ours[0] == theirs[0]
    for ours_part, theirs_part in zip(ours[1:], theirs[1:]):
        assert ours_part.keys() == theirs_part.keys()
        for key in ours_part:
            assert torch.equal(ours_part[key], theirs_part[key]), key


def test_training_losses_and_gradients_equal_the_published_step(tiny_training, random_vgg):
    """Everything the project changed, against the published computation: equal up to float rounding."""
    networks, train_params, batch = tiny_training
    ours = one_step(networks, train_params, random_vgg, batch, "project")
    theirs = one_step(networks, train_params, random_vgg, batch, "published")
    assert ours[0].keys() == theirs[0].keys()
    for key in ours[0]:
        assert ours[0][key] == pytest.approx(theirs[0][key], rel=1e-5, abs=1e-7), key
    for ours_part, theirs_part in zip(ours[1:3], theirs[1:3]):
        flat_ours = torch.cat([g.flatten() for g in ours_part.values()])
        flat_theirs = torch.cat([g.flatten() for g in theirs_part.values()])
        # Relative to the whole gradient: biases in front of BatchNorm get (mathematically zero)
        # gradients of pure rounding noise, which no per-tensor relative test can compare.
        assert (flat_ours - flat_theirs).norm() <= 1e-5 * flat_theirs.norm()
        assert (flat_ours - flat_theirs).abs().max() <= 1e-5 * flat_theirs.abs().max()
