"""GANimation / ULME-GAN training in the form train.py's generic trainer runs: the data and the step.

Data (:class:`AUFrames`, ULME-GAN's ``ULMEDataset`` in train mode): every frame of the training clips
that has measured AUs is one sample; its AUs are the aumaker table's intensities / 5; the target AUs
are those of another frame drawn at random from the whole training set, plus U(-aus_noise, aus_noise).
Images are resized to ``model_params.image_size`` (bicubic, as the original's Resize) and scaled to
[-1, 1]; a random horizontal flip when ``augmentation_params.flip_param.horizontal_flip`` is on (the
original flips unless --no_flip). All randomness is drawn inside ``__getitem__``, which the trainer
runs under the sample's seed (data_order.SeededSamples), so a resumed run repeats every sample.

Step (:class:`GanimationTraining`, the original's ``optimize_paras``): the generator's forward and its
cycle once; the critic's losses (WGAN-GP, AU regression on the real image) → its Adam step; then, on
every ``train_gen_iter``-th step of the epoch (the first one included), the generator's losses with the
*updated* critic on the same forward → its Adam step. Learning rates change once per epoch (LambdaLR).
"""
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

import au_format
from errors import InputError
from frame_io import clip_folders, list_frames, read_rgb
from modules.ganimation.ganimation import GANimationModel
from modules.ganimation.model_utils import get_scheduler
from train import Phase

LAMBDAS = ("lambda_dis", "lambda_aus", "lambda_rec", "lambda_mask", "lambda_tv", "lambda_wgan_gp")


class AUDataError(InputError, RuntimeError):
    """Training frames without usable AU tables; the message names the clips and what to run."""


def au_dir_of(dataset_params):
    """The AU tables' folder: ``au_dir``, else <root_dir>/aus (aumaker.py's default)."""
    return Path(dataset_params["au_dir"] or Path(dataset_params["root_dir"]) / "aus")


def to_network_image(frame, size, channels=3):
    """(H, W, 3) uint8 → (channels, size, size) float32 in [-1, 1]: bicubic resize, ToTensor, Normalize(0.5, 0.5)."""
    image = Image.fromarray(np.ascontiguousarray(frame))
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    if channels == 1:
        image = image.convert("L")
    array = np.asarray(image, np.float32).reshape(size, size, channels) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).mul(2).sub(1)


def clip_aus(au_dir, clip, frames):
    """(intensities (T, 17) float32 / 5, found (T,) bool) of a clip's ``frames`` (paths) from its AU table.

    Raises AUDataError when the table is missing, damaged or lists other frames."""
    path = au_format.au_path(au_dir, clip)
    try:
        table = au_format.read_aus(path)
    except au_format.AUFormatError as error:
        raise AUDataError(str(error)) from None
    row = {name: i for i, name in enumerate(table.frames)}
    missing = [f.name for f in frames if f.name not in row]
    if missing:
        raise AUDataError(f"{path}: no row for {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}; "
                          "the clip changed since aumaker.py ran: run it again")
    order = [row[f.name] for f in frames]
    return table.intensity[order] / au_format.INTENSITY_MAX, table.found[order]


class AUFrames(Dataset):
    """Every frame with measured AUs of the clips under ``<root_dir>/train``.

    Items: {'source': (C, S, S) float32 in [-1, 1], 'source_aus': (17,) float32, 'target_aus': (17,) float32
    (another frame's AUs + noise), 'name': clip}; S = ``image_size``.
    """

    def __init__(self, root_dir, au_dir, image_size=128, img_nc=3, flip=True, aus_noise=0.1, frame_order="natural",
                 split="train"):
        self.image_size, self.img_nc, self.flip, self.aus_noise = int(image_size), int(img_nc), bool(flip), aus_noise
        folders = clip_folders(Path(root_dir) / split)
        if not folders:
            raise AUDataError(f"no clip folders under {Path(root_dir) / split}; run preprocess.py --output "
                              f"{Path(root_dir) / split}")
        self.paths, self.clips, aus, missing, problems, skipped = [], [], [], [], [], 0
        for folder in folders:
            frames = list_frames(folder, frame_order)
            if not au_format.au_path(au_dir, folder.name).is_file():
                missing.append(folder.name)
                continue
            try:
                values, found = clip_aus(au_dir, folder.name, frames)
            except AUDataError as error:
                problems.append(str(error))
                continue
            skipped += int((~found).sum())
            for path, value, ok in zip(frames, values, found):
                if ok:
                    self.paths.append(path)
                    self.clips.append(folder.name)
                    aus.append(value)
        if missing or problems:
            lines = ([f"no AU table in {au_dir} for {len(missing)} clip(s): {', '.join(missing[:8])}"] if missing
                     else []) + problems[:8]
            raise AUDataError("the training clips' AUs are not usable:\n  " + "\n  ".join(lines)
                              + f"\nrun: python aumaker.py --root {root_dir} --out {au_dir}")
        if not self.paths:
            raise AUDataError(f"no training frame under {Path(root_dir) / split} has measured AUs (found=0 "
                              "everywhere); check the faces or import OpenFace's AUs with aumaker.py --openface")
        if skipped:
            warnings.warn(f"{skipped} training frame(s) without measured AUs (found=0) are left out", stacklevel=2)
        self.aus = np.stack(aus).astype(np.float32)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        # The original draws the target with random.choice and the noise with numpy; the generators here
        # are torch's, seeded per sample by the trainer (data_order.SeededSamples).
        image = to_network_image(read_rgb(self.paths[index]), self.image_size, self.img_nc)
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        target = int(torch.randint(len(self.paths), ()))
        noise = (torch.rand(self.aus.shape[1], dtype=torch.float64) * 2 - 1) * self.aus_noise
        return {"source": image, "source_aus": torch.from_numpy(self.aus[index].copy()),
                "target_aus": (torch.from_numpy(self.aus[target].astype(np.float64)) + noise).float(),
                "name": self.clips[index]}


def build_au_dataset(config, is_train=True, validate=True):
    """The method's training data from a validated config (frames checked by frames_dataset first)."""
    params = config["dataset_params"]
    if validate and (Path(params["root_dir"]) / "train").is_dir():
        from frames_dataset import validate_dataset

        validate_dataset(params["root_dir"], params["frame_shape"], splits=("train",), use_prior=False,
                         frame_order=params["frame_order"])
    flip = ((params["augmentation_params"] or {}).get("flip_param") or {}).get("horizontal_flip", False)
    model = config["model_params"]
    train = config.get("train_params") or {}
    return AUFrames(params["root_dir"], au_dir_of(params), model["image_size"], model["img_nc"], flip,
                    train.get("aus_noise", 0.1), params["frame_order"], "train" if is_train else "test")


def batches_per_epoch(num_samples, batch_size, world_size=1):
    """Steps per epoch as train.Trainer counts them (ResumableSampler shards, drop_last batches)."""
    return math.ceil(num_samples / world_size) // (batch_size // world_size)


class GanimationTraining:
    """The training step of GANimation / ULME-GAN over networks {'gen', 'dis'}."""

    def __init__(self, networks, config, device):
        self.networks = networks
        self.params = config["train_params"]
        self.model = GANimationModel(networks["gen"], networks["dis"], gan_type=self.params["gan_type"],
                                     **{k: self.params[k] for k in LAMBDAS}).to(device)
        self.world_size = 1
        # The original counts the generator's turn (idx % train_gen_iter) within each epoch; the step's
        # place in its epoch follows from the global iteration and the steps per epoch, which the
        # trainer tells once its loader exists (set_steps_per_epoch).
        self.steps_per_epoch = None

    def set_steps_per_epoch(self, steps):
        self.steps_per_epoch = steps

    def optimizers(self):
        betas = (self.params["beta1"], self.params["beta2"])
        return {f"optimizer_{name}": torch.optim.Adam(self.networks[name].parameters(), lr=self.params["lr"],
                                                      betas=betas) for name in ("gen", "dis")}

    def schedulers(self, optimizers):
        p = self.params
        return {"scheduler" + key[len("optimizer"):]: get_scheduler(
            optimizer, lr_policy=p["lr_policy"], niter=p["niter"], niter_decay=p["niter_decay"],
            epoch_count=p["epoch_count"], lr_decay_iters=p["lr_decay_iters"],
            published=p["lr_decay_rule"] == "published") for key, optimizer in optimizers.items()}

    def step_in_epoch(self, epoch, iteration):
        per_epoch = self.steps_per_epoch
        within = iteration - epoch * per_epoch
        return within if 0 <= within < per_epoch else iteration

    def phases(self, batch, epoch, iteration):
        """The critic's phase every step; the generator's when the step in the epoch is a multiple of
        ``train_gen_iter``. The generator's losses are computed after the critic's update."""
        src, src_aus, tar_aus = batch["source"], batch["source_aus"], batch["target_aus"]
        out = self.model(src, tar_aus, src_aus)
        yield Phase(self.dis_terms(self.model.dis_losses(src, src_aus, out)), ("optimizer_dis",), ("dis",),
                    self._shown(out), self._all_reduce("dis"))
        if self.step_in_epoch(epoch, iteration) % self.params["train_gen_iter"] == 0:
            yield Phase(self.gen_terms(self.model.gen_losses(src, tar_aus, out)), ("optimizer_gen",), ("gen",),
                        self._shown(out), self._all_reduce("gen"))

    def dis_terms(self, losses):
        """The critic's loss as its weighted terms (logged one by one; their sum is the original's loss_dis)."""
        p = self.params
        terms = {"dis_fake": p["lambda_dis"] * losses["dis_fake"], "dis_real": p["lambda_dis"] * losses["dis_real"],
                 "dis_real_aus": p["lambda_aus"] * losses["dis_real_aus"]}
        if "dis_gp" in losses:
            terms["dis_gp"] = p["lambda_wgan_gp"] * losses["dis_gp"]
        return terms

    def gen_terms(self, losses):
        """The generator's loss as its weighted terms (their sum is the original's loss_gen)."""
        p = self.params
        return {"gen_GAN": p["lambda_dis"] * losses["gen_GAN"],
                "gen_fake_aus": p["lambda_aus"] * losses["gen_fake_aus"],
                "gen_rec": p["lambda_rec"] * losses["gen_rec"],
                "gen_mask": p["lambda_mask"] * (losses["gen_mask_real_aus"] + losses["gen_mask_fake_aus"]),
                "gen_smooth": p["lambda_tv"] * (losses["gen_smooth_real_aus"] + losses["gen_smooth_fake_aus"])}

    @staticmethod
    def _shown(out):
        return {k: out[k] for k in ("aus_mask", "color_mask", "fake_img")}

    def _all_reduce(self, name):
        """Under torchrun: average the network's gradients over the processes before its step (what DDP
        would do; DDP itself does not fit the double-backward of the gradient penalty nor a forward shared
        by two optimiser phases)."""
        if self.world_size == 1:
            return None
        import torch.distributed as dist

        def average():
            for p in self.networks[name].parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad.div_(self.world_size)
        return average

    def distribute(self, device):
        import torch.distributed as dist

        self.world_size = dist.get_world_size()

    def sheet(self, batch, generated, visualizer_params):
        """source | attention | colour | result, one row per sample (at most visualizer.MAX_ROWS)."""
        return au_sheet(batch["source"], generated, visualizer_params.get("draw_border", True))


def au_sheet(source, generated, draw_border=True, rows=4):
    """The training picture: (H', W', 3) uint8 with a header row. source (B, C, S, S) in [-1, 1];
    generated: 'aus_mask' (B, 1, S, S) in [0, 1], 'color_mask' and 'fake_img' (B, C, S, S) in [-1, 1]."""
    import visualizer

    def image(x):  # (C, S, S) → (S, S, 3) uint8
        x = x.detach().float().cpu().clamp(0, 1)
        return (x.expand(3, -1, -1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)

    columns = [("source", lambda i: image((source[i] + 1) / 2)),
               ("attention", lambda i: image(generated["aus_mask"][i])),
               ("colour", lambda i: image((generated["color_mask"][i] + 1) / 2)),
               ("result", lambda i: image((generated["fake_img"][i] + 1) / 2))]
    rows = min(rows, source.shape[0])
    h, w = source.shape[2:]
    border = 2 if draw_border else 0
    sheet = np.full((rows * (h + border) + border, len(columns) * (w + border) + border, 3), 160, np.uint8)
    for r in range(rows):
        for c, (_, draw) in enumerate(columns):
            y, x = border + r * (h + border), border + c * (w + border)
            sheet[y:y + h, x:x + w] = draw(r)
    header = visualizer._label_strip([name for name, _ in columns], w, 14, border)
    return np.concatenate([header, sheet], axis=0)
