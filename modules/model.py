"""Full training models: the generator side (keypoints → generator → every generator loss) and the
discriminator side, as in FOMM's ``GeneratorFullModel`` / ``DiscriminatorFullModel``."""
import contextlib

import torch
from torch import nn

from modules.geometry import Transform, normalized_to_pixels, pixels_to_normalized
from modules.losses import (equivariance_jacobian_loss, equivariance_value_loss, feature_matching_loss,
                            lsgan_discriminator_loss, lsgan_generator_loss, perceptual_loss)
from modules.perceptual import ImagePyramid, Vgg19


def detach_kp(kp):
    return {key: value.detach() for key, value in kp.items()}


@contextlib.contextmanager
def frozen(module):
    """Inside the block ``module``'s parameters do not require grad (restored afterwards), so graphs
    built there lead back to its inputs only and backward computes no gradients for its weights."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p in params:
            p.requires_grad_(True)


def warped_prior(transform, prior, frame_size):
    """Where prior keypoints (B, K, 2) pixels land in the frame ``transform`` produces. (B, K, 2) pixels.

    ``transform.warp_coordinates`` maps transformed-frame points back to the original frame, so the
    transformed frame's prior is the inverse warp of the original prior (in the keypoint values'
    normalisation, 2·p/size − 1).
    """
    normalized = pixels_to_normalized(prior, frame_size)
    return normalized_to_pixels(transform.inverse_warp_coordinates(normalized), frame_size)


class GeneratorFullModel(nn.Module):
    """forward(batch) → (losses dict, generated dict).

    batch: 'source', 'driving' (B, C, H, W) in [0, 1]; in prior mode also 'source_prior',
    'driving_prior' (B, K, 2) pixels. ``train_params`` is the validated config section.
    """

    def __init__(self, kp_extractor, generator, discriminator, train_params, vgg=None):
        super().__init__()
        self.kp_extractor = kp_extractor
        self.generator = generator
        self.discriminator = discriminator
        self.train_params = train_params
        self.scales = train_params["scales"]
        self.disc_scales = discriminator.scales
        self.pyramid = ImagePyramid(self.scales, generator.num_channels)
        self.loss_weights = train_params["loss_weights"]
        self.prior_equivariance = train_params.get("prior_equivariance", "corrected")
        if sum(self.loss_weights["perceptual"]) != 0:
            self.vgg = vgg if vgg is not None else Vgg19(train_params.get("vgg_weights"))
        else:
            self.vgg = None

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
        if self.vgg is not None:
            losses["perceptual"] = perceptual_loss(self.vgg, pyramid_generated, pyramid_real, self.scales,
                                                   weights["perceptual"])

        if weights["generator_gan"] != 0:
            kp = detach_kp(kp_driving)
            # The published step also computed the discriminator's weight gradients here (from the
            # generated and, through feature matching, the real frames) and then zeroed them before the
            # discriminator's own step. They are never used, so the discriminator is frozen for this
            # pass and sees the real frames without a graph: the generator's and keypoint detector's
            # gradients are the same, the discriminator's forward (spectral-norm power iterations
            # included) is unchanged, and its backward runs to the generated frames only.
            with frozen(self.discriminator):
                maps_generated = self.discriminator(pyramid_generated, kp=kp)
                with torch.no_grad():
                    maps_real = self.discriminator(pyramid_real, kp=kp)
            losses["gen_gan"] = lsgan_generator_loss(
                [maps_generated[f"prediction_map_{s}"] for s in self.disc_scales], weights["generator_gan"])
            if sum(weights["feature_matching"]) != 0:
                losses["feature_matching"] = feature_matching_loss(
                    [maps_real[f"feature_maps_{s}"] for s in self.disc_scales],
                    [maps_generated[f"feature_maps_{s}"] for s in self.disc_scales], weights["feature_matching"])

        if weights["equivariance_value"] + weights["equivariance_jacobian"] != 0:
            driving = x["driving"]
            transform = Transform(driving.shape[0], device=driving.device, align_corners=self.generator.align_corners,
                                  **self.train_params["transform_params"])
            transformed_frame = transform.transform_frame(driving)
            transformed_prior = None
            if self.uses_prior:
                prior = x["driving_prior"]
                if self.prior_equivariance == "corrected":
                    prior = warped_prior(transform, prior, driving.shape[2:])
                transformed_prior = prior
            transformed_kp = self.keypoints(transformed_frame, transformed_prior)
            generated["transformed_frame"] = transformed_frame
            generated["transformed_kp"] = transformed_kp
            if transformed_prior is not None:
                generated["transformed_prior"] = transformed_prior
            if weights["equivariance_value"] != 0:
                losses["equivariance_value"] = weights["equivariance_value"] * equivariance_value_loss(
                    kp_driving["value"], transform.warp_coordinates(transformed_kp["value"]))
            if weights["equivariance_jacobian"] != 0:
                losses["equivariance_jacobian"] = weights["equivariance_jacobian"] * equivariance_jacobian_loss(
                    kp_driving["jacobian"], transform.jacobian(transformed_kp["value"]), transformed_kp["jacobian"])
        return losses, generated


class DiscriminatorFullModel(nn.Module):
    """forward(batch, generated) → {'disc_gan': LSGAN loss} on real driving vs. detached prediction."""

    def __init__(self, kp_extractor, generator, discriminator, train_params):
        super().__init__()
        self.discriminator = discriminator
        self.scales = discriminator.scales
        self.pyramid = ImagePyramid(train_params["scales"], generator.num_channels)
        self.loss_weights = train_params["loss_weights"]

    def forward(self, x, generated):
        pyramid_real = self.pyramid(x["driving"])
        pyramid_generated = self.pyramid(generated["prediction"].detach())
        kp = detach_kp(generated["kp_driving"])
        maps_generated = self.discriminator(pyramid_generated, kp=kp)
        maps_real = self.discriminator(pyramid_real, kp=kp)
        loss = lsgan_discriminator_loss([maps_real[f"prediction_map_{s}"] for s in self.scales],
                                        [maps_generated[f"prediction_map_{s}"] for s in self.scales],
                                        self.loss_weights["discriminator_gan"])
        return {"disc_gan": loss}
