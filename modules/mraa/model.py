"""MRAA's training objectives: the reconstruction stage (original ``modules/model.py``'s
``ReconstructionModel``) and the AVD stage (original ``train_avd.py``'s loss).

Reconstruction: perceptual pyramid loss of the generated vs. the driving frame, plus equivariance of
the region shifts and affines under a random affine + TPS warp of the driving frame. There is no
discriminator. The warp is :class:`modules.geometry.Transform`, numerically MRAA's own (L1-distance
TPS with d²·log(d + 1e-6), reflection padding, ``align_corners=False``; the fixture's ``transform/*``
checks it). The perceptual loss uses :class:`modules.perceptual.Vgg19` (the same torchvision VGG19
layers relu1_1 … relu5_1 and ImageNet normalisation; the project's weight policy: ImageNet weights
from a path or the cache, else a fixed random VGG with a warning) and
:class:`modules.perceptual.ImagePyramid`, whose separable blur equals MRAA's ``ImagePyramide`` up to
float rounding (about 1e-7).

AVD: the region parameters of the driving frame, randomly rescaled per axis, are the pose input; the
source frame's are the identity input; the target is the unscaled driving parameters (L1).
"""
import torch
from torch import nn

from modules.geometry import Transform
from modules.losses import perceptual_loss
from modules.perceptual import ImagePyramid, Vgg19


def region_params(region_predictor, frame, prior=None):
    """The region predictor on ``frame`` (B, C, H, W); a prior-based one (``uses_prior``, FPB-FOMM's AWP
    variant) also gets the frame's prior points (B, 18, 2) pixels."""
    if getattr(region_predictor, "uses_prior", False):
        return region_predictor(frame, prior)
    return region_predictor(frame)


def detach_kp(kp):
    return {key: value.detach() for key, value in kp.items()}


def equivariance_shift_loss(driving_shift, warped_transformed_shift):
    """mean |μ_D − T(μ_T)|: shifts of the driving frame vs. those of its warped copy mapped back. (B, R, 2)."""
    return torch.abs(driving_shift - warped_transformed_shift).mean()


def equivariance_affine_loss(driving_affine, warp_jacobian, transformed_affine, revert_axis_swap=True):
    """mean |I − A_D⁻¹ (∇T · A_T)| over (B, R, 2, 2) affines; with ``revert_axis_swap`` the product is
    first multiplied by the sign of its (0, 0) entry (an SVD axis flip is not an error)."""
    value = torch.matmul(torch.inverse(driving_affine), torch.matmul(warp_jacobian, transformed_affine))
    if revert_axis_swap:
        value = value * torch.sign(value[:, :, 0:1, 0:1])
    eye = torch.eye(2, dtype=value.dtype, device=value.device).view(1, 1, 2, 2)
    return torch.abs(eye - value).mean()


class ReconstructionModel(nn.Module):
    """forward({'source', 'driving': (B, C, H, W)}) → (loss_values, generated).

    loss_values: 'perceptual', 'equivariance_shift', 'equivariance_affine' (each present when its
    weight is non-zero; already weighted). generated: the generator's output plus
    'source_region_params', 'driving_region_params' and, with equivariance, 'transformed_frame' and
    'transformed_region_params'.

    ``train_params``: the config section ('scales', 'loss_weights' {'perceptual': 5 layer weights,
    'equivariance_shift', 'equivariance_affine'}, 'transform_params', optional 'vgg_weights').
    ``vgg``: an already built perceptual network to share; ``transform_generator``: a
    ``torch.Generator`` for the random warps (None: the global generator, as the original).
    """

    def __init__(self, region_predictor, bg_predictor, generator, train_params, vgg=None,
                 transform_generator=None):
        super().__init__()
        self.region_predictor = region_predictor
        self.bg_predictor = bg_predictor
        self.generator = generator
        self.train_params = train_params
        self.scales = train_params["scales"]
        self.pyramid = ImagePyramid(self.scales, generator.num_channels)
        self.loss_weights = train_params["loss_weights"]
        self.transform_generator = transform_generator
        if sum(self.loss_weights["perceptual"]) != 0:
            self.vgg = vgg if vgg is not None else Vgg19(train_params.get("vgg_weights"))
        else:
            self.vgg = None

    @property
    def revert_axis_swap(self):
        flow = self.generator.pixelwise_flow_predictor
        return flow.revert_axis_swap if flow is not None else False

    def forward(self, x):
        source_region_params = region_params(self.region_predictor, x["source"], x.get("source_prior"))
        driving_region_params = region_params(self.region_predictor, x["driving"], x.get("driving_prior"))
        bg_params = self.bg_predictor(x["source"], x["driving"])
        generated = self.generator(x["source"], source_region_params=source_region_params,
                                   driving_region_params=driving_region_params, bg_params=bg_params)
        generated.update({"source_region_params": source_region_params,
                          "driving_region_params": driving_region_params})
        weights = self.loss_weights
        loss_values = {}

        if self.vgg is not None:
            pyramid_real = self.pyramid(x["driving"])
            pyramid_generated = self.pyramid(generated["prediction"])
            loss_values["perceptual"] = perceptual_loss(self.vgg, pyramid_generated, pyramid_real, self.scales,
                                                        weights["perceptual"])

        if weights["equivariance_shift"] + weights["equivariance_affine"] != 0:
            driving = x["driving"]
            transform = Transform(driving.shape[0], device=driving.device, generator=self.transform_generator,
                                  **self.train_params["transform_params"])
            transformed_frame = transform.transform_frame(driving)
            transformed_prior = None
            if getattr(self.region_predictor, "uses_prior", False):
                # The warped frame's prior: the driving prior moved by the warp (no dlib in the loop).
                from modules.model import warped_prior

                transformed_prior = warped_prior(transform, x["driving_prior"], driving.shape[2:])
            transformed_region_params = region_params(self.region_predictor, transformed_frame, transformed_prior)
            generated["transformed_frame"] = transformed_frame
            generated["transformed_region_params"] = transformed_region_params
            if weights["equivariance_shift"] != 0:
                loss_values["equivariance_shift"] = weights["equivariance_shift"] * equivariance_shift_loss(
                    driving_region_params["shift"], transform.warp_coordinates(transformed_region_params["shift"]))
            if weights["equivariance_affine"] != 0:
                loss_values["equivariance_affine"] = weights["equivariance_affine"] * equivariance_affine_loss(
                    driving_region_params["affine"], transform.jacobian(transformed_region_params["shift"]),
                    transformed_region_params["affine"], revert_axis_swap=self.revert_axis_swap)
        return loss_values, generated


def random_scale(region_params, scale, generator=None):
    """Scale shifts and affines by diag(t) with t ~ U[1 − scale, 1 + scale]² per sample (the AVD's
    shape augmentation). {'shift' (B, R, 2), 'affine' (B, R, 2, 2)} → the same keys.

    The factors are drawn on the CPU (as the original's ``torch.rand``) and moved to the params' device.
    """
    shift = region_params["shift"]
    theta = torch.rand(shift.shape[0], 2, generator=generator) * (2 * scale) + (1 - scale)
    theta = torch.diag_embed(theta).unsqueeze(1).to(device=shift.device, dtype=shift.dtype)  # (B, 1, 2, 2)
    return {"shift": torch.matmul(theta, shift.unsqueeze(-1)).squeeze(-1),
            "affine": torch.matmul(theta, region_params["affine"])}


def avd_reconstruction_loss(reconstruction, pose_target, lambda_shift=1.0, lambda_affine=1.0):
    """{'rec_shift', 'rec_affine'}: weighted mean L1 between the AVD output and the unscaled driving
    region params ('shift' (B, R, 2), 'affine' (B, R, 2, 2))."""
    return {"rec_shift": lambda_shift * torch.abs(pose_target["shift"] - reconstruction["shift"]).mean(),
            "rec_affine": lambda_affine * torch.abs(pose_target["affine"] - reconstruction["affine"]).mean()}


class AVDTrainingModel(nn.Module):
    """One step of the original ``train_avd.py``: forward({'source', 'driving'}) → (loss_values, rec).

    The region predictor runs without gradients. The original leaves it in train mode there (its
    BatchNorm uses batch statistics and keeps updating the saved running statistics during AVD
    training); ``region_predictor_mode='eval'`` (default) freezes it in eval mode, 'train' keeps the
    original's behaviour. ``train_avd_params``: 'random_scale', 'lambda_shift', 'lambda_affine'.
    """

    def __init__(self, region_predictor, avd_network, train_avd_params, region_predictor_mode="eval",
                 generator=None):
        super().__init__()
        if region_predictor_mode not in ("eval", "train"):
            raise ValueError(f"region_predictor_mode must be 'eval' or 'train', got {region_predictor_mode!r}")
        self.region_predictor = region_predictor
        self.avd_network = avd_network
        self.params = train_avd_params
        self.region_predictor_mode = region_predictor_mode
        self.random_generator = generator

    def forward(self, x):
        self.region_predictor.train(self.region_predictor_mode == "train" and self.training)
        with torch.no_grad():
            params_id = region_params(self.region_predictor, x["source"], x.get("source_prior"))
            pose_target = region_params(self.region_predictor, x["driving"], x.get("driving_prior"))
            params_pose = random_scale(pose_target, self.params["random_scale"], generator=self.random_generator)
        rec = self.avd_network(params_id, params_pose)
        losses = avd_reconstruction_loss(rec, pose_target, self.params["lambda_shift"], self.params["lambda_affine"])
        return losses, rec
