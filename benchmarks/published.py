"""The published FP-FOMM / FOMM code paths, rebuilt from this project's modules, as baselines.

Benchmarks compare the project against "the published code as users run it"; tests use the same
code as the straightforward computation that the project's faster paths must equal. Nothing here is
used by the project itself.

What is emulated, and how (FOMM's ``modules/model.py``, ``train.py``, ``animate.py``):

- ``published_blur``: AntiAliasInterpolation2d as published — pad, depthwise convolution of the whole
  frame, then ``F.interpolate(scale_factor=scale)`` (nearest) keeps every (1/scale)-th pixel.
- ``PublishedGeneratorFullModel``: the published order of the generator losses. VGG19 features of the
  real frame are computed in grad mode and detached in the loss; the discriminator runs on the
  generated and the real pyramid with its weights requiring grad, and feature matching
  ``|D(real) − D(generated)|`` lets gradients flow into both (they are computed by backward, then
  zeroed before the discriminator's own step).
- ``PublishedDiscriminatorFullModel``: recomputes both pyramids and the discriminator on the real
  frame and on the detached prediction.
- ``published_step``: FOMM's train loop body: generator losses → backward → Adam steps (for-loop
  implementation, torch's default on CPU) of the generator and keypoint detector; then the
  discriminator's zero_grad → its loss → backward → step.
- ``published_vgg19``: torchvision's whole VGG19 (classifier included) is built and its feature
  layers sliced, as FOMM's Vgg19 does (costs ~0.5 GB more memory while building).
- ``published_animation_frame``: one frame of FOMM's animate loop (batch 1; keypoints of the source
  and of the driving frame, full generator forward: the source is encoded again for every frame).

Losses use the project's loss functions and the project's networks; only the structure differs.
"""
import types

import torch
import torch.nn.functional as F
from torch import nn

from modules.blocks import AntiAliasInterpolation2d
from modules.geometry import Transform
from modules.losses import equivariance_jacobian_loss, equivariance_value_loss
from modules.model import detach_kp, warped_prior
from modules.motion_transfer import normalize_kp
from modules.perceptual import ImagePyramid


# --------------------------------------------------------------------------- blur

def _published_blur_forward(self, x):
    """FOMM's AntiAliasInterpolation2d.forward: full-frame depthwise conv, then nearest subsampling."""
    if self.scale == 1.0:
        return x
    out = F.pad(x, (self.pad, self.pad, self.pad, self.pad))
    out = F.conv2d(out, weight=self.weight.to(x.dtype), groups=self.groups)
    return F.interpolate(out, scale_factor=(self.scale, self.scale))


def published_blur(module):
    """Make every AntiAliasInterpolation2d inside ``module`` compute as published. Returns ``module``."""
    for child in module.modules():
        if isinstance(child, AntiAliasInterpolation2d):
            child.forward = types.MethodType(_published_blur_forward, child)
    return module


def published_pyramid(scales, num_channels):
    return published_blur(ImagePyramid(scales, num_channels))


# --------------------------------------------------------------------------- VGG19

class PublishedVgg19(nn.Module):
    """FOMM's Vgg19: slices of torchvision's vgg19().features, ImageNet normalisation inside.
    forward((B, 3, H, W) in [0, 1]) → [relu1_1, relu2_1, relu3_1, relu4_1, relu5_1]."""

    SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))

    def __init__(self, features_state=None):
        super().__init__()
        import torchvision

        # As published: the whole network is built (classifier included), then sliced.
        features = torchvision.models.vgg19(weights=None).features
        if features_state is not None:
            features.load_state_dict(features_state, strict=False)
        self.slices = nn.ModuleList(nn.Sequential(*[features[i] for i in range(a, b)]) for a, b in self.SLICES)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def forward(self, x):
        out = (x - self.mean) / self.std
        taps = []
        for block in self.slices:
            out = block(out)
            taps.append(out)
        return taps


def published_vgg19(project_vgg):
    """A PublishedVgg19 with the same weights as the project's Vgg19 ``project_vgg``."""
    return PublishedVgg19(project_vgg.features.state_dict())


# --------------------------------------------------------------------------- training

class PublishedGeneratorFullModel(nn.Module):
    """forward(batch) → (losses, generated), the published computation order (see module docstring).

    Same constructor arguments and loss names as modules.model.GeneratorFullModel.
    """

    def __init__(self, kp_extractor, generator, discriminator, train_params, vgg):
        super().__init__()
        self.kp_extractor = kp_extractor
        self.generator = generator
        self.discriminator = discriminator
        self.train_params = train_params
        self.scales = train_params["scales"]
        self.disc_scales = discriminator.scales
        self.pyramid = published_pyramid(self.scales, generator.num_channels)
        self.loss_weights = train_params["loss_weights"]
        self.prior_equivariance = train_params.get("prior_equivariance", "corrected")
        self.vgg = vgg

    @property
    def uses_prior(self):
        return self.kp_extractor.mode == "prior"

    def keypoints(self, frame, prior=None):
        return self.kp_extractor(frame, prior) if self.uses_prior else self.kp_extractor(frame)

    def forward(self, x):
        kp_source = self.keypoints(x["source"], x.get("source_prior"))
        kp_driving = self.keypoints(x["driving"], x.get("driving_prior"))
        generated = self.generator(x["source"], kp_source=kp_source, kp_driving=kp_driving)
        generated.update({"kp_source": kp_source, "kp_driving": kp_driving})
        weights = self.loss_weights
        losses = {}
        pyramid_real = self.pyramid(x["driving"])
        pyramid_generated = self.pyramid(generated["prediction"])

        if sum(weights["perceptual"]) != 0:
            total = 0
            for scale in self.scales:
                x_vgg = self.vgg(pyramid_generated[f"prediction_{scale}"])
                y_vgg = self.vgg(pyramid_real[f"prediction_{scale}"])
                for i, weight in enumerate(weights["perceptual"]):
                    total += weight * torch.abs(x_vgg[i] - y_vgg[i].detach()).mean()
            losses["perceptual"] = total

        if weights["generator_gan"] != 0:
            maps_generated = self.discriminator(pyramid_generated, kp=detach_kp(kp_driving))
            maps_real = self.discriminator(pyramid_real, kp=detach_kp(kp_driving))
            total = 0
            for scale in self.disc_scales:
                total += weights["generator_gan"] * ((1 - maps_generated[f"prediction_map_{scale}"]) ** 2).mean()
            losses["gen_gan"] = total
            if sum(weights["feature_matching"]) != 0:
                total = 0
                for scale in self.disc_scales:
                    pairs = zip(maps_real[f"feature_maps_{scale}"], maps_generated[f"feature_maps_{scale}"])
                    for i, (a, b) in enumerate(pairs):
                        if weights["feature_matching"][i] == 0:
                            continue
                        total += weights["feature_matching"][i] * torch.abs(a - b).mean()
                losses["feature_matching"] = total

        if weights["equivariance_value"] + weights["equivariance_jacobian"] != 0:
            driving = x["driving"]
            transform = Transform(driving.shape[0], device=driving.device, align_corners=self.generator.align_corners,
                                  **self.train_params["transform_params"])
            transformed_frame = transform.transform_frame(driving)
            prior = None
            if self.uses_prior:
                prior = x["driving_prior"]
                if self.prior_equivariance == "corrected":
                    prior = warped_prior(transform, prior, driving.shape[2:])
            transformed_kp = self.keypoints(transformed_frame, prior)
            generated["transformed_frame"] = transformed_frame
            generated["transformed_kp"] = transformed_kp
            if weights["equivariance_value"] != 0:
                losses["equivariance_value"] = weights["equivariance_value"] * equivariance_value_loss(
                    kp_driving["value"], transform.warp_coordinates(transformed_kp["value"]))
            if weights["equivariance_jacobian"] != 0:
                losses["equivariance_jacobian"] = weights["equivariance_jacobian"] * equivariance_jacobian_loss(
                    kp_driving["jacobian"], transform.jacobian(transformed_kp["value"]), transformed_kp["jacobian"])
        return losses, generated


class PublishedDiscriminatorFullModel(nn.Module):
    """forward(batch, generated) → {'disc_gan'}: both pyramids and both discriminator passes recomputed."""

    def __init__(self, kp_extractor, generator, discriminator, train_params):
        super().__init__()
        self.discriminator = discriminator
        self.scales = discriminator.scales
        self.pyramid = published_pyramid(train_params["scales"], generator.num_channels)
        self.loss_weights = train_params["loss_weights"]

    def forward(self, x, generated):
        pyramid_real = self.pyramid(x["driving"])
        pyramid_generated = self.pyramid(generated["prediction"].detach())
        kp_driving = generated["kp_driving"]
        maps_generated = self.discriminator(pyramid_generated, kp=detach_kp(kp_driving))
        maps_real = self.discriminator(pyramid_real, kp=detach_kp(kp_driving))
        total = 0
        for scale in self.scales:
            value = (1 - maps_real[f"prediction_map_{scale}"]) ** 2 + maps_generated[f"prediction_map_{scale}"] ** 2
            total += self.loss_weights["discriminator_gan"] * value.mean()
        return {"disc_gan": total}


def published_optimizers(kp_detector, generator, discriminator, train_params):
    """Adam (β 0.5, 0.999) per network, torch's default implementation (a per-tensor loop on CPU)."""
    return {name: torch.optim.Adam(module.parameters(), lr=train_params[f"lr_{name}"], betas=(0.5, 0.999))
            for name, module in (("kp_detector", kp_detector), ("generator", generator),
                                 ("discriminator", discriminator))}


def published_step(generator_full, discriminator_full, optimizers, batch, use_gan, timer=None):
    """FOMM's train loop body. ``timer(name)`` (optional) is called at each phase boundary:
    'generator_forward', 'generator_backward', 'generator_update', 'discriminator'. Returns the losses."""
    mark = timer or (lambda name: None)
    losses, generated = generator_full(batch)
    mark("generator_forward")
    loss = sum(value.mean() for value in losses.values())
    loss.backward()
    mark("generator_backward")
    optimizers["generator"].step()
    optimizers["generator"].zero_grad()
    optimizers["kp_detector"].step()
    optimizers["kp_detector"].zero_grad()
    mark("generator_update")
    values = {name: float(value.detach()) for name, value in losses.items()}
    if use_gan:
        optimizers["discriminator"].zero_grad()
        disc_losses = discriminator_full(batch, generated)
        sum(value.mean() for value in disc_losses.values()).backward()
        optimizers["discriminator"].step()
        optimizers["discriminator"].zero_grad()
        values.update({name: float(value.detach()) for name, value in disc_losses.items()})
    mark("discriminator")
    return values


# --------------------------------------------------------------------------- animation

def published_animation_frame(kp_detector, generator, source, driving, source_prior, driving_prior,
                              kp_driving_initial, normalization):
    """One frame of the published animate loop, batch 1, under no_grad.

    source, driving: (1, C, H, W) float; priors (1, 18, 2) pixels or None (learned keypoints).
    kp_driving_initial: keypoints of the clip's first frame. → (H, W, C) float32 numpy prediction.
    """
    with torch.no_grad():
        if source_prior is not None:
            kp_source = kp_detector(source, source_prior)
            kp_driving = kp_detector(driving, driving_prior)
        else:
            kp_source, kp_driving = kp_detector(source), kp_detector(driving)
        kp_norm = normalize_kp(kp_source=kp_source, kp_driving=kp_driving, kp_driving_initial=kp_driving_initial,
                               **normalization)
        out = generator(source, kp_source=kp_source, kp_driving=kp_norm)
        return out["prediction"].data.cpu().numpy().transpose(0, 2, 3, 1)[0]
