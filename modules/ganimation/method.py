"""GANimation (``ganimation``) and ULME-GAN (``ulme-gan``) as methods of the registry (methods.py).

Both are the same networks (``model_utils.SplitGenerator`` / ``SplitDiscriminator``, checkpoint names
``gen`` and ``dis``) and the same training step (WGAN-GP critic every step, generator every fifth);
they differ only in the loss weights their configs carry (config/ulme_gan.yaml, config/ganimation.yaml).
Their data are AU tables (aumaker.py → ``<dataset_params.au_dir>/<clip>.csv``), not keypoints: no
facial prior. Animation drives the target face by the driving clip's AUs with ULME-GAN's test-time
options (``animate_params``: re-encoding, fitting, intensity factor); see modules/ganimation/driver.py.
"""
from configuration import BOOL, NUM, SCHEMA, ConfigError, Field, Section, train_section

MODEL_PARAMS = Section({
    "img_nc": Field(int, 3, choices=(1, 3)),
    "aus_nc": Field(int, 17, choices=(17,)),   # the 17 OpenFace AUs of au_format.py
    "image_size": Field(int, 128, low=4),      # the networks' input; frames are resized to it
    "ngf": Field(int, 64, low=1),
    "ndf": Field(int, 64, low=1),
    "norm": Field(str, "instance", choices=("instance", "batch", "none")),
    "use_dropout": Field(BOOL, False),
    # The original fixes both at 6 (define_splitG / define_splitD); tiny test configs use fewer blocks.
    "n_blocks": Field(int, 6, low=0),
    "n_layers": Field(int, 6, low=1),
    "init_type": Field(str, "normal", choices=("normal", "xavier", "kaiming", "orthogonal")),
    "init_gain": Field(NUM, 0.02, above=0),
})

TRAIN_PARAMS = train_section({
    "lr": Field(NUM, 1e-4, above=0),
    "beta1": Field(NUM, 0.5, low=0, high=1),
    "beta2": Field(NUM, 0.999, low=0, high=1),
    "gan_type": Field(str, "wgan-gp", choices=("wgan-gp", "lsgan", "gan")),
    "train_gen_iter": Field(int, 5, low=1),
    # Per-epoch learning rate: constant for niter epochs, then linear decay over niter_decay.
    "lr_policy": Field(str, "lambda", choices=("lambda", "step")),
    "niter": Field(int, 20, low=0),
    "niter_decay": Field(int, 10, low=0),
    "epoch_count": Field(int, 1, low=0),
    "lr_decay_iters": Field(int, 50, low=1),
    # 'corrected' (pix2pix's rule) or 'published' (the replicate's off-by-one: the last epoch at LR 0).
    "lr_decay_rule": Field(str, "corrected", choices=("corrected", "published")),
    "aus_noise": Field(NUM, 0.1, low=0),
    "lambda_dis": Field(NUM, 1.0, low=0),
    "lambda_aus": Field(NUM, 160.0, low=0),
    "lambda_rec": Field(NUM, 10.0, low=0),
    "lambda_mask": Field(NUM, 0.0, low=0),
    "lambda_tv": Field(NUM, 0.0, low=0),
    "lambda_wgan_gp": Field(NUM, 10.0, low=0),
})

DATASET_PARAMS = Section({**SCHEMA["dataset_params"],
                          # aumaker.py's output; null → <root_dir>/aus.
                          "au_dir": Field(str, None, nullable=True)})

ANIMATE_PARAMS = Section({**SCHEMA["animate_params"],
                          # ULME-GAN's test options (its --re_code, --linear_fitting / --apex_frame, --factor).
                          "re_code": Field(BOOL, True),
                          "presence_threshold": Field(NUM, 0.5, above=0, high=1),
                          "fitting": Field(str, "linear_fitting", choices=("linear_fitting", "apex_frame", "1V1")),
                          # The published linear ramp (reads the already-ramped frame 1 as the last frame).
                          "published_linear_fitting": Field(BOOL, False),
                          # apex_frame: end the falling ramp on the template itself (the original stops a step short).
                          "end_at_template": Field(BOOL, False),
                          "factor": Field(NUM, 1.0, low=0),
                          # null: the apex (largest sum of re-encoded intensities); else a frame index.
                          "top_frame": Field(int, None, nullable=True, low=0)}, required=False)

UNSUPPORTED_AUGMENTATIONS = ("rotation_param", "resize_param", "crop_param")


class GanimationFamily:
    """GANimation / ULME-GAN: one spec class, two registry names (their configs differ in the lambdas)."""

    uses_prior = False
    # demo.py drives these methods by an AU table or by AUs measured on the driving video.
    driven_by_aus = True
    sections = {"model_params": MODEL_PARAMS, "train_params": TRAIN_PARAMS, "dataset_params": DATASET_PARAMS,
                "animate_params": ANIMATE_PARAMS}
    animation_networks = ("gen",)
    checkpoint_networks = ("gen", "dis")
    # Fine-tuning (ULME-GAN's transfer learning) from a checkpoint that has only the generator trains a
    # fresh critic.
    stage_networks = {"train": ("gen",)}
    optional_networks = ("dis",)

    def __init__(self, name):
        self.name = name

    def check(self, config, where):
        model = config["model_params"]
        frame_shape = config["dataset_params"]["frame_shape"]
        if len(frame_shape) != 3 or frame_shape[2] != model["img_nc"] or min(frame_shape[:2]) < 1:
            raise ConfigError(f"{where}: 'dataset_params.frame_shape' must be [H, W, img_nc] with img_nc = "
                              f"{model['img_nc']}, got {frame_shape}")
        size = model["image_size"]
        if size % 4 or size % (2 ** model["n_layers"]):
            raise ConfigError(f"{where}: 'model_params.image_size' {size} must be divisible by 4 (generator) and "
                              f"by 2**n_layers = {2 ** model['n_layers']} (discriminator)")
        augmentation = config["dataset_params"]["augmentation_params"] or {}
        used = [k for k in UNSUPPORTED_AUGMENTATIONS if augmentation.get(k)]
        jitter = augmentation.get("jitter_param") or {}
        if any(jitter.values()):
            used.append("jitter_param")
        if (augmentation.get("flip_param") or {}).get("time_flip"):
            used.append("flip_param.time_flip")
        if used:
            raise ConfigError(f"{where}: 'dataset_params.augmentation_params': {', '.join(used)} not supported by "
                              f"{self.name} (the original only flips horizontally); remove them")
        train = config.get("train_params")
        if train and train["lr_policy"] == "lambda" and train["niter"] + train["niter_decay"] < 1:
            raise ConfigError(f"{where}: 'train_params.niter' + 'niter_decay' must be at least 1")

    def build_networks(self, model_params):
        from modules.ganimation.model_utils import SplitDiscriminator, SplitGenerator, get_norm_layer, init_weights

        norm = get_norm_layer(model_params["norm"])
        gen = SplitGenerator(model_params["img_nc"], model_params["aus_nc"], model_params["ngf"], norm_layer=norm,
                             use_dropout=model_params["use_dropout"], n_blocks=model_params["n_blocks"])
        dis = SplitDiscriminator(model_params["img_nc"], model_params["aus_nc"], model_params["image_size"],
                                 model_params["ndf"], n_layers=model_params["n_layers"], norm_layer=norm)
        for net in (gen, dis):
            init_weights(net, model_params["init_type"], model_params["init_gain"])
        return {"gen": gen, "dis": dis}

    def example_item(self, config, generator):
        """One random training sample as AUFrames gives it (benchmarks, device checks): an image in
        [-1, 1] at the model's size, its AUs and a target's (÷5, in [0, 1])."""
        import torch

        model = config["model_params"]
        size, channels, aus = model["image_size"], model["img_nc"], model["aus_nc"]
        return {"source": torch.rand(channels, size, size, generator=generator) * 2 - 1,
                "source_aus": torch.rand(aus, generator=generator),
                "target_aus": torch.rand(aus, generator=generator)}

    def build_dataset(self, config, is_train=True, validate=True):
        from modules.ganimation.training import build_au_dataset

        return build_au_dataset(config, is_train, validate)

    def training(self, networks, config, device):
        from modules.ganimation.training import GanimationTraining

        return GanimationTraining(networks, config, device)

    def driver(self, networks, config, device, precision="fp32", compile=False, batch_frames=8):
        from modules.ganimation.driver import GanimationDriver

        return GanimationDriver(networks["gen"], config, device, precision, batch_frames)


ULME_GAN = GanimationFamily("ulme-gan")
GANIMATION = GanimationFamily("ganimation")


def import_original(gen_path, out_path, dis_path=None):
    """The original's ``<epoch>_net_gen.pth`` (and ``<epoch>_net_dis.pth``), plain state dicts, as a checkpoint
    of this project ({'gen': …, 'dis': …}) that ``--checkpoint`` takes for animation and fine-tuning.
    Read with weights_only=True; written atomically. Returns ``out_path``."""
    import torch

    import checkpoint as ckpt

    data = {}
    for name, path in (("gen", gen_path), ("dis", dis_path)):
        if path is None:
            continue
        state = ckpt.read_checkpoint(str(path))
        if name in state and isinstance(state[name], dict):   # already one of ours
            state = state[name]
        if not all(torch.is_tensor(v) for v in state.values()):
            raise ckpt.CheckpointError(f"{path}: not a plain state dict of the original's net_{name}")
        data[name] = state
    ckpt.write_atomically(data, str(out_path))
    return out_path


def main(argv=None):
    """python -m modules.ganimation.method GEN.pth [--dis DIS.pth] --out model.pth.tar"""
    import argparse
    import sys

    from errors import InputError, report

    parser = argparse.ArgumentParser(description="Import an original GANimation / ULME-GAN checkpoint "
                                                 "(<epoch>_net_gen.pth, optionally <epoch>_net_dis.pth).")
    parser.add_argument("gen", help="the original's <epoch>_net_gen.pth")
    parser.add_argument("--dis", default=None, help="the original's <epoch>_net_dis.pth (to fine-tune with it)")
    parser.add_argument("--out", required=True, help="the checkpoint to write (.pth.tar)")
    args = parser.parse_args(argv)
    try:
        import_original(args.gen, args.out, args.dis)
    except InputError as error:
        return report("modules.ganimation.method", error)
    print(f"{args.out}: gen" + (" and dis" if args.dis else ""), file=sys.stdout)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
