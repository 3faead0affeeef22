"""TPSMM training losses: the original ``modules/model.py`` ``GeneratorFullModel`` and the AVD stage
of ``train_avd.py``, with the loss terms as pure functions.

Stage 1 (``GeneratorFullModel.forward(x, epoch)``), weights from ``train_params.loss_weights``:

- ``perceptual``: pyramid VGG19 L1 (``modules.perceptual``; its Vgg19 taps relu1_1..relu5_1 and its
  ImagePyramid give the original's keys ``prediction_<scale>``; the pyramid's separable blur equals
  the original's blur + nearest subsampling up to float rounding for frame sizes divisible by 1/scale);
- ``equivariance_value``: keypoints of a randomly TPS-warped driving frame, warped back, vs. the
  driving keypoints (TPS 'random', reflection padding, ``align_corners=True``);
- ``warp_loss``: warped source encoder features vs. the driving frame's own (``get_encode``);
- ``bg``: the background affine of (source, driving) times that of (driving, source) vs. I, from
  epoch ``bg_start`` on (the bg predictor is not run at all before it);
- TPS dropout while ``epoch < dropout_epoch`` with p from :func:`dropout_schedule`.

Stage 2 (:class:`AVDFullModel`): the keypoint detector frozen, the AVD network learns to rebuild the
driving keypoints from the source keypoints (identity) and a randomly rescaled copy of the driving
keypoints (pose): ``lambda_shift · mean |kp_driving − avd(kp_source, random_scale(kp_driving))|``.
"""
import torch
import torch.nn.functional as F
from torch import nn

from modules.losses import perceptual_loss
from modules.perceptual import ImagePyramid, Vgg19
from modules.tpsmm.util import TPS


def detach_kp(kp):
    return {key: value.detach() for key, value in kp.items()}


def dropout_schedule(epoch, dropout_epoch, dropout_maxp, dropout_startp, dropout_inc_epoch):
    """(dropout_flag, dropout_p) for ``epoch``: dropout for epochs below ``dropout_epoch``, p rising
    linearly from ``dropout_startp`` by ``dropout_maxp / dropout_inc_epoch`` per epoch, capped at
    ``dropout_maxp``; afterwards (False, 0). (The original's formula: the slope is maxp/inc_epoch
    whatever startp is, so maxp is reached before ``dropout_inc_epoch`` when startp > 0.)"""
    if epoch >= dropout_epoch:
        return False, 0
    return True, min(epoch / dropout_inc_epoch * dropout_maxp + dropout_startp, dropout_maxp)


def equivariance_value_loss(kp_driving, warped_transformed_kp):
    """mean |p − T(p')|: (B, N, 2) driving keypoints vs. the warped frame's keypoints mapped back."""
    return torch.abs(kp_driving - warped_transformed_kp).mean()


def warp_loss(encode_map, decode_map):
    """Σ_i mean |encode_map[i] − decode_map[−i−1]|.

    encode_map: ``get_encode`` output, fine to coarse; decode_map: ``warped_encoder_maps``, coarse
    to fine (lists of (B, C_i, H_i, W_i)).
    """
    value = 0
    for i in range(len(encode_map)):
        value = value + torch.abs(encode_map[i] - decode_map[-i - 1]).mean()
    return value


def bg_loss(bg_param, bg_param_reverse):
    """mean |I − A·A'| for the (B, 3, 3) background affines of (source, driving) and (driving, source).

    The original views the identity as (1, 1, 3, 3), so the mean runs over a (1, B, 3, 3) broadcast:
    the same value."""
    value = torch.matmul(bg_param, bg_param_reverse)
    eye = torch.eye(3, dtype=value.dtype, device=value.device)
    return torch.abs(eye - value).mean()


class GeneratorFullModel(nn.Module):
    """forward(x, epoch) → (loss_values, generated).

    x: {'source', 'driving'}: (B, C, H, W) in [0, 1]. loss_values: {'perceptual', 'equivariance_value',
    'warp_loss', 'bg'} (each only when its weight is not 0; 'bg' only when a bg_predictor is given and
    epoch ≥ bg_start), weighted scalars. generated: the InpaintingNetwork output plus 'kp_source',
    'kp_driving' and, with the equivariance loss, 'transformed_frame', 'transformed_kp'.

    ``bg_predictor`` None (config ``common_params.bg: False``) trains without background motion.
    ``vgg``: a ready Vgg19 (default: ``Vgg19(train_params.get('vgg_weights'))``).
    """

    def __init__(self, kp_extractor, bg_predictor, dense_motion_network, inpainting_network, train_params,
                 *args, vgg=None, **kwargs):
        super().__init__()
        self.kp_extractor = kp_extractor
        self.inpainting_network = inpainting_network
        self.dense_motion_network = dense_motion_network
        self.bg_predictor = bg_predictor if bg_predictor else None
        self.bg_start = train_params.get("bg_start", 0)
        self.train_params = train_params
        self.scales = train_params["scales"]
        self.pyramid = ImagePyramid(self.scales, inpainting_network.num_channels)
        self.loss_weights = train_params["loss_weights"]
        self.dropout_epoch = train_params["dropout_epoch"]
        self.dropout_maxp = train_params["dropout_maxp"]
        self.dropout_inc_epoch = train_params["dropout_inc_epoch"]
        self.dropout_startp = train_params["dropout_startp"]
        if sum(self.loss_weights["perceptual"]) != 0:
            self.vgg = vgg if vgg is not None else Vgg19(train_params.get("vgg_weights"))
        else:
            self.vgg = None

    def dropout(self, epoch):
        """(dropout_flag, dropout_p) of ``epoch`` (:func:`dropout_schedule` with this config)."""
        return dropout_schedule(epoch, self.dropout_epoch, self.dropout_maxp, self.dropout_startp,
                                self.dropout_inc_epoch)

    def uses_bg(self, epoch):
        return self.bg_predictor is not None and epoch >= self.bg_start

    # Hooks for the variants (modules/tpsmm/training.py): where keypoints come from, the decoder's
    # condition, extra loss terms. The defaults are TPSMM's.
    def detect(self, x, key):
        """Keypoints of ``x[key]`` ('source' or 'driving')."""
        return self.kp_extractor(x[key])

    def detect_transformed(self, x, transformed_frame):
        """Keypoints of the randomly warped driving frame (equivariance loss)."""
        return self.kp_extractor(transformed_frame)

    def condition(self, x):
        """The inpainting decoder's condition (B, C) or None."""
        return None

    def extra_losses(self, x, generated, epoch):
        """Further weighted loss terms {name: scalar}."""
        return {}

    def forward(self, x, epoch):
        source, driving = x["source"], x["driving"]
        kp_source = self.detect(x, "source")
        kp_driving = self.detect(x, "driving")
        bg_param = self.bg_predictor(source, driving) if self.uses_bg(epoch) else None
        dropout_flag, dropout_p = self.dropout(epoch)

        dense_motion = self.dense_motion_network(source_image=source, kp_driving=kp_driving, kp_source=kp_source,
                                                 bg_param=bg_param, dropout_flag=dropout_flag, dropout_p=dropout_p)
        condition = self.condition(x)
        generated = self.inpainting_network(source, dense_motion, condition) if condition is not None \
            else self.inpainting_network(source, dense_motion)
        generated.update({"kp_source": kp_source, "kp_driving": kp_driving})
        weights = self.loss_weights
        loss_values = {}

        if self.vgg is not None:
            loss_values["perceptual"] = perceptual_loss(self.vgg, self.pyramid(generated["prediction"]),
                                                        self.pyramid(driving), self.scales, weights["perceptual"])

        if weights["equivariance_value"] != 0:
            transform_random = TPS(mode="random", bs=driving.shape[0], device=driving.device,
                                   **self.train_params["transform_params"])
            transform_grid = transform_random.transform_frame(driving)
            transformed_frame = F.grid_sample(driving, transform_grid, padding_mode="reflection", align_corners=True)
            transformed_kp = self.detect_transformed(x, transformed_frame)
            generated["transformed_frame"] = transformed_frame
            generated["transformed_kp"] = transformed_kp
            warped = transform_random.warp_coordinates(transformed_kp["fg_kp"])
            loss_values["equivariance_value"] = weights["equivariance_value"] * equivariance_value_loss(
                kp_driving["fg_kp"], warped)

        if weights["warp_loss"] != 0:
            encode_map = self.inpainting_network.get_encode(driving, generated["occlusion_map"])
            loss_values["warp_loss"] = weights["warp_loss"] * warp_loss(encode_map, generated["warped_encoder_maps"])

        if self.uses_bg(epoch) and weights["bg"] != 0:
            bg_param_reverse = self.bg_predictor(driving, source)
            loss_values["bg"] = weights["bg"] * bg_loss(bg_param, bg_param_reverse)

        loss_values.update(self.extra_losses(x, generated, epoch))
        return loss_values, generated


def random_scale(kp_params, scale, generator=None):
    """Scale each sample's keypoints about the origin by diag(s_x, s_y), s ~ U(1 − scale, 1 + scale),
    drawn on CPU (global generator or ``generator``) as the original. {'fg_kp': (B, N, 2)} → same."""
    kp = kp_params["fg_kp"]
    theta = torch.rand(kp.shape[0], 2, generator=generator) * (2 * scale) + (1 - scale)
    theta = torch.diag_embed(theta).unsqueeze(1).to(kp)
    return {"fg_kp": torch.matmul(theta, kp.unsqueeze(-1)).squeeze(-1)}


def avd_reconstruction_loss(kp_driving_gt, rec, lambda_shift):
    """lambda_shift · mean |kp_driving − rec|, both {'fg_kp': (B, N, 2)}."""
    return lambda_shift * torch.abs(kp_driving_gt["fg_kp"] - rec["fg_kp"]).mean()


class AVDFullModel(nn.Module):
    """The AVD training step of ``train_avd.py``: forward(x) → ({'rec_kp': loss}, {'kp_source',
    'kp_driving', 'kp_driving_random', 'rec'}).

    The keypoint detector is trained in stage 1 and only read here, under ``no_grad``; only the AVD
    network's parameters should go to the optimiser. ``train_avd_params``: ``random_scale``,
    ``lambda_shift``.

    ``kp_detector_mode``: 'eval' (default) runs the detector in eval mode (restored afterwards), so it
    gives the keypoints animation will see and its BatchNorm statistics stay those of stage 1.
    'as_is' is the published behaviour: ``run.py`` never calls ``eval()``, so the detector ran in train
    mode (batch statistics, 256 samples) and its running statistics drifted during AVD training and
    were saved with the AVD checkpoint.
    """

    def __init__(self, kp_detector, avd_network, train_avd_params, kp_detector_mode="eval"):
        super().__init__()
        if kp_detector_mode not in ("eval", "as_is"):
            raise ValueError(f"kp_detector_mode must be 'eval' or 'as_is', got {kp_detector_mode!r}")
        self.kp_detector = kp_detector
        self.avd_network = avd_network
        self.random_scale = train_avd_params["random_scale"]
        self.lambda_shift = train_avd_params["lambda_shift"]
        self.kp_detector_mode = kp_detector_mode

    def detect(self, frames):
        was_training = self.kp_detector.training
        if self.kp_detector_mode == "eval":
            self.kp_detector.eval()
        try:
            with torch.no_grad():
                return self.kp_detector(frames)
        finally:
            self.kp_detector.train(was_training)

    def forward(self, x):
        kp_source = self.detect(x["source"])
        kp_driving_gt = self.detect(x["driving"])
        kp_driving_random = random_scale(kp_driving_gt, scale=self.random_scale)
        rec = self.avd_network(kp_source, kp_driving_random)
        losses = {"rec_kp": avd_reconstruction_loss(kp_driving_gt, rec, self.lambda_shift)}
        return losses, {"kp_source": kp_source, "kp_driving": kp_driving_gt,
                        "kp_driving_random": kp_driving_random, "rec": rec}


def build_optimizers(train_params, kp_detector, dense_motion_network, inpainting_network, bg_predictor=None,
                     start_epoch=0):
    """The original ``train.py`` set-up: one Adam (lr ``lr_generator``, betas (0.5, 0.999), weight decay
    1e-4) over inpainting + dense motion + keypoint detector, a second, identical Adam for the bg
    predictor, each with MultiStepLR(``epoch_milestones``, gamma 0.1) stepped once per epoch.
    Returns (optimizer, optimizer_bg_predictor or None, [schedulers])."""
    lr = train_params["lr_generator"]
    params = (list(inpainting_network.parameters()) + list(dense_motion_network.parameters())
              + list(kp_detector.parameters()))
    optimizer = torch.optim.Adam([{"params": params, "initial_lr": lr}], lr=lr, betas=(0.5, 0.999),
                                 weight_decay=1e-4)
    schedulers = [torch.optim.lr_scheduler.MultiStepLR(optimizer, train_params["epoch_milestones"], gamma=0.1,
                                                       last_epoch=start_epoch - 1)]
    optimizer_bg = None
    if bg_predictor is not None:
        optimizer_bg = torch.optim.Adam([{"params": bg_predictor.parameters(), "initial_lr": lr}], lr=lr,
                                        betas=(0.5, 0.999), weight_decay=1e-4)
        schedulers.append(torch.optim.lr_scheduler.MultiStepLR(optimizer_bg, train_params["epoch_milestones"],
                                                               gamma=0.1, last_epoch=start_epoch - 1))
    return optimizer, optimizer_bg, schedulers


def build_avd_optimizer(train_avd_params, avd_network):
    """``train_avd.py``: Adam(lr ``lr``, betas (0.5, 0.999), no weight decay) on the AVD network and
    MultiStepLR(``epoch_milestones``, gamma 0.1). Returns (optimizer, scheduler)."""
    optimizer = torch.optim.Adam(avd_network.parameters(), lr=train_avd_params["lr"], betas=(0.5, 0.999))
    return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, train_avd_params["epoch_milestones"], gamma=0.1)
