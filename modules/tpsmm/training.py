"""The TPS family's training steps in the form train.py runs (``train.Phase``).

Stage ``train`` (the original train.py): one Adam ``optimizer`` (lr ``lr_generator``, betas
(0.5, 0.999), weight decay 1e-4) over inpainting + dense motion + keypoint detector and, with
``bg``, an identical ``optimizer_bg_predictor`` that steps from ``bg_start`` on; MultiStepLR ×0.1 at
``epoch_milestones``, per epoch. Before the steps, the gradients of the keypoint detector and the
dense motion network (and the bg predictor from ``bg_start``) are clipped to max |g| ≤
``clip_grad_max`` (∞-norm, the original's 10).

Stage ``train_avd`` (train_avd.py): Adam ``optimizer_avd`` (lr ``lr``, no weight decay) on the AVD
network only; the stage-1 keypoint detector is read, not trained.

The variants change the generator model (modules/tpsmm/model.py's hooks): TPSMM-ME adds the masked
L1 face loss, TPSRAU takes its keypoints from the batch's landmarks and conditions the decoder on
the batch's AU difference.
"""
import math

import torch
from torch.nn.parallel import DistributedDataParallel

from modules.tpsmm.model import AVDFullModel, GeneratorFullModel
from train import Phase, multistep_schedulers


def face_l1(prediction, driving, mask):
    """mean |m·prediction − m·driving| over (B, C, H, W); mask (B, 1, H, W) in [0, 1]."""
    return torch.abs(mask * prediction - mask * driving).mean()


class MeFullModel(GeneratorFullModel):
    """TPSMM-ME: TPSMM's losses + ``fg_warp_loss``, the face-region L1 of the prediction.

    ``face_loss`` 'weighted' (default): weight · mean|m·(ŷ − y)| whenever the weight is not 0.
    'published': the original's term, unweighted (its weight 100 only switched it on), and only
    while the bg predictor runs (``bg`` and epoch ≥ bg_start).
    """

    def extra_losses(self, x, generated, epoch):
        weight = self.loss_weights.get("fg_warp_loss", 0)
        if weight == 0:
            return {}
        value = face_l1(generated["prediction"], x["driving"], x["driving_mask"])
        if self.train_params.get("face_loss", "weighted") == "published":
            return {"fg_warp_loss": value} if self.uses_bg(epoch) else {}
        return {"fg_warp_loss": weight * value}


class TpsrauFullModel(GeneratorFullModel):
    """FMEG-TPSRAU: keypoints from the batch's landmarks (the clip's first frame, for source and
    driving, as the original), the AU difference into the decoder (when the AU branch is on). The
    equivariance term compares the driving keypoints with the same landmarks warped: a constant with
    no gradient, as in the original."""

    def detect(self, x, key):
        return self.kp_extractor(x[f"{key}_keypoints"], x[key].shape[2:])

    def detect_transformed(self, x, transformed_frame):
        return self.kp_extractor(x["driving_keypoints"], transformed_frame.shape[2:])

    def condition(self, x):
        return x["au_cond"] if self.inpainting_network.num_cond_channels else None


class TpsTraining:
    """Stage 1 of TPSMM / TPSMM-ME / TPSRAU."""

    FULL_MODELS = {"tpsmm": GeneratorFullModel, "me": MeFullModel, "tpsrau": TpsrauFullModel}

    def __init__(self, networks, config, device, variant="tpsmm"):
        self.networks = networks
        self.train_params = config["train_params"]
        self.bg = networks.get("bg_predictor")
        full = self.FULL_MODELS[variant]
        self.full_model = full(networks["kp_detector"], self.bg, networks["dense_motion_network"],
                               networks["inpainting_network"], self.train_params).to(device)
        self.step_model = self.full_model
        self.trained = ("kp_detector", "dense_motion_network", "inpainting_network")

    def optimizers(self):
        lr = self.train_params["lr_generator"]
        params = [p for name in ("inpainting_network", "dense_motion_network", "kp_detector")
                  for p in self.networks[name].parameters()]
        adam = dict(lr=lr, betas=(0.5, 0.999), weight_decay=1e-4)
        optimizers = {"optimizer": torch.optim.Adam(params, **adam)}
        if self.bg is not None:
            optimizers["optimizer_bg_predictor"] = torch.optim.Adam(self.bg.parameters(), **adam)
        return optimizers

    def schedulers(self, optimizers):
        return multistep_schedulers(optimizers, self.train_params["epoch_milestones"])

    def phases(self, batch, epoch, iteration):
        losses, generated = self.step_model(batch, epoch)
        uses_bg = self.full_model.uses_bg(epoch)
        optimizers = ("optimizer",) + (("optimizer_bg_predictor",) if uses_bg else ())
        clipped = [self.networks["kp_detector"], self.networks["dense_motion_network"]]
        clipped += [self.bg] if uses_bg else []
        limit = self.train_params["clip_grad_max"]

        def clip():
            for module in clipped:
                parameters = [p for p in module.parameters() if p.grad is not None]
                if parameters:
                    torch.nn.utils.clip_grad_norm_(parameters, max_norm=limit, norm_type=math.inf)

        networks = self.trained + (("bg_predictor",) if uses_bg else ())
        yield Phase(losses, optimizers, networks, generated, clip)

    def distribute(self, device):
        device_ids = [device.index] if device.type == "cuda" else None
        # The bg predictor is idle before bg_start and the VGG is frozen: unused parameters exist.
        self.step_model = DistributedDataParallel(self.full_model, device_ids=device_ids, find_unused_parameters=True)

    def sheet(self, batch, generated, visualizer_params):
        return tps_sheet(batch, generated, visualizer_params)


class TpsAvdTraining:
    """Stage 2: the AVD network learns identity/pose disentanglement of stage-1 keypoints."""

    def __init__(self, networks, config, device):
        self.networks = networks
        self.params = config["train_avd_params"]
        self.full_model = AVDFullModel(networks["kp_detector"], networks["avd_network"], self.params,
                                       kp_detector_mode=self.params["kp_detector_mode"]).to(device)
        self.step_model = self.full_model

    def optimizers(self):
        return {"optimizer_avd": torch.optim.Adam(self.networks["avd_network"].parameters(), lr=self.params["lr"],
                                                  betas=(0.5, 0.999))}

    def schedulers(self, optimizers):
        return multistep_schedulers(optimizers, self.params["epoch_milestones"])

    def phases(self, batch, epoch, iteration):
        losses, generated = self.step_model(batch)
        generated = dict(generated, prediction=batch["driving"])
        yield Phase(losses, ("optimizer_avd",), ("avd_network",), generated)

    def distribute(self, device):
        device_ids = [device.index] if device.type == "cuda" else None
        self.step_model = DistributedDataParallel(self.full_model, device_ids=device_ids, find_unused_parameters=True)

    def sheet(self, batch, generated, visualizer_params):
        return tps_sheet(batch, {**generated, "kp_driving": generated["rec"]}, visualizer_params)


def tps_sheet(batch, generated, visualizer_params):
    """The per-epoch picture: visualizer.sample_sheet with TPS keypoints ('fg_kp') as its 'value'."""
    import visualizer

    rows = visualizer.MAX_ROWS
    shown = {"prediction": generated["prediction"]}
    for key in ("kp_source", "kp_driving", "transformed_kp"):
        if key in generated:
            shown[key] = {"value": generated[key]["fg_kp"]}
    if "transformed_frame" in generated:
        shown["transformed_frame"] = generated["transformed_frame"]
    if "deformed" in generated:
        shown["deformed"] = generated["deformed"]
    if "occlusion_map" in generated:
        shown["occlusion_map"] = generated["occlusion_map"][-1]
    return visualizer.sample_sheet(visualizer.detached(batch, rows), visualizer.detached(shown, rows),
                                   **visualizer_params)
