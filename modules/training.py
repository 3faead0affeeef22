"""The FOMM family's training step, in the form train.py's generic trainer runs (see ``train.Phase``).

One optimiser step, FOMM's order: the generator-side losses (perceptual, GAN, feature matching,
equivariance) → backward → Adam steps of the generator and keypoint detector; then, only when
``loss_weights.generator_gan`` is non-zero, the discriminator's LSGAN loss → its own step. Adam
(β 0.5, 0.999) per network at ``lr_<network>``; learning rates drop ×0.1 at ``epoch_milestones``.
"""
from itertools import chain

import torch
from torch.nn.parallel import DistributedDataParallel

from train import Phase, adam_optimizers, multistep_schedulers


class FommTraining:
    """FP-FOMM / FOMM training: GeneratorFullModel and DiscriminatorFullModel of modules/model.py."""

    def __init__(self, networks, train_params, device):
        from modules.model import DiscriminatorFullModel, GeneratorFullModel

        self.networks = networks
        self.train_params = train_params
        self.use_gan = train_params["loss_weights"]["generator_gan"] != 0
        kp, gen, disc = (networks[n] for n in ("kp_detector", "generator", "discriminator"))
        self.generator_full = GeneratorFullModel(kp, gen, disc, train_params).to(device)
        self.discriminator_full = DiscriminatorFullModel(kp, gen, disc, train_params).to(device)
        self.generator_step = self.generator_full
        self.discriminator_step = self.discriminator_full

    def optimizers(self):
        """{checkpoint key: optimizer}: the published names optimizer_<network>."""
        return adam_optimizers(self.networks, self.train_params)

    def schedulers(self, optimizers):
        return multistep_schedulers(optimizers, self.train_params["epoch_milestones"])

    def phases(self, batch, epoch, iteration):
        """Yields the generator phase, then (GAN on) the discriminator phase."""
        losses, generated = self.generator_step(batch)
        yield Phase(losses, ("optimizer_generator", "optimizer_kp_detector"), ("kp_detector", "generator"),
                    generated)
        if self.use_gan:
            yield Phase(self.discriminator_step(batch, generated), ("optimizer_discriminator",), ("discriminator",))

    def distribute(self, device):
        """Wrap the full models in DistributedDataParallel (called under torchrun only)."""
        disc = self.networks["discriminator"]
        device_ids = [device.index] if device.type == "cuda" else None
        # The discriminator's gradients from the generator losses are thrown away (zeroed before its
        # own step), so the generator-side DDP neither averages nor waits for them; the frozen VGG is
        # identical everywhere by construction.
        ignored = [f"discriminator.{n}" for n, _ in chain(disc.named_parameters(), disc.named_buffers())]
        if self.generator_full.vgg is not None:
            ignored += [f"vgg.{n}" for n, _ in chain(self.generator_full.vgg.named_parameters(),
                                                     self.generator_full.vgg.named_buffers())]
        ignore = getattr(DistributedDataParallel, "_set_params_and_buffers_to_ignore_for_model", None)
        if ignore is not None:
            ignore(self.generator_full, ignored)
        self.generator_step = DistributedDataParallel(self.generator_full, device_ids=device_ids,
                                                      find_unused_parameters=ignore is None)
        if self.use_gan:
            self.discriminator_step = DistributedDataParallel(self.discriminator_full, device_ids=device_ids)

    def sheet(self, batch, generated, visualizer_params):
        """The per-epoch picture (H, W, 3) uint8 from the epoch's last batch and its outputs."""
        import visualizer

        rows = visualizer.MAX_ROWS
        kp_detector = self.networks["kp_detector"]
        generated = dict(generated)
        if getattr(kp_detector, "mode", None) == "prior" and "driving_prior" in batch:
            with torch.no_grad():
                inputs = kp_detector.network_input(batch["driving"][:rows], batch["driving_prior"][:rows])
            prior_channel = inputs[:, -1:]
            # FP-FOMM's region mask is in [0, 1]; FPB-FOMM's learned AWP map is not: scale each to [0, 1].
            low = prior_channel.amin(dim=(2, 3), keepdim=True)
            high = prior_channel.amax(dim=(2, 3), keepdim=True)
            generated["region_mask"] = (prior_channel - low) / (high - low).clamp_min(1e-8)
        return visualizer.sample_sheet(visualizer.detached(batch, rows), visualizer.detached(generated, rows),
                                       **visualizer_params)
