"""MRAA's two training stages in the form train.py's generic trainer runs (``train.Phase``).

``train`` (original ``train.py``): one Adam (β 0.5, 0.999) over generator + region predictor +
background predictor at ``lr``, saved as ``optimizer_reconstruction``; the reconstruction model's
perceptual and equivariance losses (no discriminator); the rate drops ×0.1 at ``epoch_milestones``.

``train_avd`` (original ``train_avd.py``): Adam on the AVD network only at ``lr`` (``optimizer_avd``),
the frozen region predictor's parameters of source and (randomly rescaled) driving frames in, L1 on
shift and affine. The original saved the AVD optimiser under ``optimizer_reconstruction`` too,
overwriting the first stage's; here each stage saves only its own.
"""
import contextlib

import torch
from torch.nn.parallel import DistributedDataParallel

from train import ADAM_BETAS, Phase, multistep_schedulers

RECONSTRUCTION_NETWORKS = ("generator", "region_predictor", "bg_predictor")


def region_keypoints(params):
    """Region shifts as the sheet's keypoints: {'value': (B, R, 2)}."""
    return {"value": params["shift"]}


def sheet_columns(generated):
    """The reconstruction outputs in the keys visualizer.sample_sheet draws (shifts as keypoints)."""
    out = {k: generated[k] for k in ("prediction", "deformed", "occlusion_map", "transformed_frame")
           if k in generated}
    out["kp_source"] = region_keypoints(generated["source_region_params"])
    out["kp_driving"] = region_keypoints(generated["driving_region_params"])
    if "transformed_region_params" in generated:
        out["transformed_kp"] = region_keypoints(generated["transformed_region_params"])
    return out


def draw_sheet(batch, generated, visualizer_params):
    import visualizer

    rows = visualizer.MAX_ROWS
    params = {k: visualizer_params[k] for k in ("kp_size", "colormap", "draw_border") if k in visualizer_params}
    return visualizer.sample_sheet(visualizer.detached(batch, rows), visualizer.detached(generated, rows), **params)


@contextlib.contextmanager
def eval_mode(*modules):
    """Modules in eval mode for the block, their modes restored after (no BatchNorm statistics change)."""
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


class MraaTraining:
    """The reconstruction stage: modules/mraa/model.py's ReconstructionModel."""

    find_unused_parameters = False

    def __init__(self, networks, config, device):
        from modules.mraa.model import ReconstructionModel

        self.networks = networks
        self.params = config["train_params"]
        self.model = ReconstructionModel(networks["region_predictor"], networks["bg_predictor"],
                                         networks["generator"], self.params).to(device)
        self.step_model = self.model

    def optimizers(self):
        parameters = [p for name in RECONSTRUCTION_NETWORKS for p in self.networks[name].parameters()]
        return {"optimizer_reconstruction": torch.optim.Adam(parameters, lr=self.params["lr"], betas=ADAM_BETAS)}

    def schedulers(self, optimizers):
        return multistep_schedulers(optimizers, self.params["epoch_milestones"])

    def phases(self, batch, epoch, iteration):
        losses, generated = self.step_model(batch)
        yield Phase(losses, ("optimizer_reconstruction",), RECONSTRUCTION_NETWORKS, generated)

    def distribute(self, device):
        device_ids = [device.index] if device.type == "cuda" else None
        self.step_model = DistributedDataParallel(self.model, device_ids=device_ids,
                                                  find_unused_parameters=self.find_unused_parameters)

    def sheet(self, batch, generated, visualizer_params):
        return draw_sheet(batch, sheet_columns(generated), visualizer_params)


class MraaAvdTraining:
    """The AVD stage: modules/mraa/model.py's AVDTrainingModel on the frozen first-stage networks."""

    find_unused_parameters = False

    def __init__(self, networks, config, device):
        from modules.mraa.model import AVDTrainingModel

        self.networks = networks
        self.params = config["train_avd_params"]
        for name in RECONSTRUCTION_NETWORKS:
            networks[name].requires_grad_(False)
        self.model = AVDTrainingModel(networks["region_predictor"], networks["avd_network"], self.params,
                                      region_predictor_mode=self.params["region_predictor_mode"]).to(device)
        self.step_model = self.model

    def optimizers(self):
        return {"optimizer_avd": torch.optim.Adam(self.networks["avd_network"].parameters(), lr=self.params["lr"],
                                                  betas=ADAM_BETAS)}

    def schedulers(self, optimizers):
        milestones = self.params["epoch_milestones"]
        if self.params["lr_schedule"] == "published":
            milestones = [m + 1 for m in milestones]
        return multistep_schedulers(optimizers, milestones)

    def phases(self, batch, epoch, iteration):
        losses, _ = self.step_model(batch)
        # The sheet is drawn from the batch (see sheet): nothing of this step is kept for it.
        yield Phase(losses, ("optimizer_avd",), ("avd_network",), {})

    def distribute(self, device):
        device_ids = [device.index] if device.type == "cuda" else None
        self.step_model = DistributedDataParallel(self.model, device_ids=device_ids,
                                                  find_unused_parameters=self.find_unused_parameters)

    def sheet(self, batch, generated, visualizer_params):
        """The original's AVD picture: each source driven through the AVD by a driving frame, all in
        eval mode (no BatchNorm statistics change)."""
        region_predictor, generator, avd = (self.networks[n] for n in ("region_predictor", "generator",
                                                                       "avd_network"))
        import visualizer

        rows = visualizer.MAX_ROWS
        from modules.mraa.model import region_params

        batch = {k: v[:rows] for k, v in batch.items() if torch.is_tensor(v)}
        with torch.no_grad(), eval_mode(region_predictor, generator, avd):
            source, driving = batch["source"], batch["driving"]
            source_params = region_params(region_predictor, source, batch.get("source_prior"))
            driving_params = region_params(region_predictor, driving, batch.get("driving_prior"))
            new_params = avd(source_params, driving_params)
            out = generator(source, source_region_params=source_params, driving_region_params=new_params)
        out.update(source_region_params=source_params, driving_region_params=new_params)
        return draw_sheet(batch, sheet_columns(out), visualizer_params)
