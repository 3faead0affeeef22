"""MRAA (``mraa``) as a method of the registry (methods.py): Motion Representations for Articulated
Animation (Siarohin et al., CVPR 2021; snap-research/articulated-animation).

The published configs (config/mraa/*.yaml) load unchanged: their model_params are the original's
(``num_regions``, ``region_predictor_params``, ``bg_predictor_params``, ``generator_params``,
``avd_network_params``), their train_params / train_avd_params keys the original's (``lr``,
``dataloader_workers``, ``use_sync_bn``), animate_params has ``mode``, visualizer_params
``region_bg_color``. Two stages: ``train`` (the reconstruction model) and ``train_avd`` (the
animation-via-disentanglement network on the frozen model), checkpoints named as the original's
(``region_predictor``, ``bg_predictor``, ``generator``, ``avd_network``, ``optimizer_reconstruction``,
``optimizer_avd``).

Project conventions where the published configs leave a choice open:

* ``dataset_params.frame_shape: null`` (the original: frames as stored, no resize) means 256×256 here:
  the project's clips are preprocessed to one size and the driver resizes targets to it; set it for
  other sizes (the TED configs' data is 384×384).
* ``dataloader_workers`` is the loader's worker count unless ``num_workers`` is given.
"""
from configuration import BOOL, NUM, SCHEMA, ConfigError, Field, Section, train_section
from modules.mraa.animation import MODES, RELATIVE_COVAR
from modules.mraa.bg_motion_predictor import BG_TYPES

DEFAULT_FRAME_SIZE = 256
DEFAULT_WORKERS = 2

REGION_PREDICTOR_PARAMS = Section({
    "temperature": Field(NUM, above=0),
    "block_expansion": Field(int, low=1),
    "max_features": Field(int, low=1),
    "scale_factor": Field(NUM, 1, above=0, high=1),
    "num_blocks": Field(int, low=1),
    "pca_based": Field(BOOL, False),
    "pad": Field(int, 3, low=0),
    "fast_svd": Field(BOOL, False),
})

MODEL_PARAMS = Section({
    "num_regions": Field(int, low=1),
    "num_channels": Field(int, 3, choices=(1, 3)),
    "estimate_affine": Field(BOOL, False),
    "revert_axis_swap": Field(BOOL, True),
    "bg_predictor_params": Section({
        "block_expansion": Field(int, low=1),
        "max_features": Field(int, low=1),
        "num_blocks": Field(int, low=1),
        "bg_type": Field(str, "zero", choices=BG_TYPES),
    }),
    "region_predictor_params": REGION_PREDICTOR_PARAMS,
    "generator_params": Section({
        "block_expansion": Field(int, low=1),
        "max_features": Field(int, low=1),
        "num_down_blocks": Field(int, low=0),
        "num_bottleneck_blocks": Field(int, low=0),
        "skips": Field(BOOL, False),
        "pixelwise_flow_predictor_params": Section({
            "block_expansion": Field(int, low=1),
            "max_features": Field(int, low=1),
            "num_blocks": Field(int, low=1),
            "scale_factor": Field(NUM, 1, above=0, high=1),
            "use_deformed_source": Field(BOOL, True),
            "use_covar_heatmap": Field(BOOL, False),
            "estimate_occlusion_map": Field(BOOL, False),
            "region_var": Field(NUM, 0.01, above=0),
        }, required=False),
    }),
    "avd_network_params": Section({
        "id_bottle_size": Field(int, 64, low=1),
        "pose_bottle_size": Field(int, 64, low=1),
    }, required=False),
})

_WORKERS = {
    # The original's name for the loader's worker count; num_workers (the project's) wins when given.
    "dataloader_workers": Field(int, None, nullable=True, low=0),
    "num_workers": Field(int, None, nullable=True, low=0),
}

TRAIN_PARAMS = train_section({
    **_WORKERS,
    "epoch_milestones": Field(list, [], item=int, low=0),
    "lr": Field(NUM, 2.0e-4, low=0),
    # The original's DataParallel switch; under torchrun the project always syncs BatchNorm on CUDA.
    "use_sync_bn": Field(BOOL, False),
    "scales": Field(list, [1, 0.5, 0.25, 0.125], item=NUM, above=0),
    "transform_params": Section({
        "sigma_affine": Field(NUM, 0.05, low=0),
        "sigma_tps": Field(NUM, 0.005, low=0),
        "points_tps": Field(int, 5, low=1),
    }, required=False),
    "loss_weights": Section({
        "perceptual": Field(list, [10, 10, 10, 10, 10], item=NUM, low=0),
        "equivariance_shift": Field(NUM, 10, low=0),
        "equivariance_affine": Field(NUM, 10, low=0),
    }),
    "vgg_weights": Field(str, None, nullable=True),
})

TRAIN_AVD_PARAMS = train_section({
    **_WORKERS,
    "epoch_milestones": Field(list, [], item=int, low=0),
    "lr": Field(NUM, 1.0e-3, low=0),
    "lambda_shift": Field(NUM, 1, low=0),
    "lambda_affine": Field(NUM, 1, low=0),
    # Per-axis scale factors U[1 − s, 1 + s]: s < 1 keeps them positive.
    "random_scale": Field(NUM, 0.25, low=0, high=0.99),
    # Project additions. 'eval': the frozen region predictor in eval mode; 'train' is the original's
    # (batch statistics, and its saved running statistics drift during this stage).
    "region_predictor_mode": Field(str, "eval", choices=("eval", "train")),
    # 'corrected': the rate drops after the milestone epochs; 'published': one epoch later, as the
    # original's scheduler.step(epoch) did.
    "lr_schedule": Field(str, "corrected", choices=("corrected", "published")),
})

DATASET_PARAMS = Section({**SCHEMA["dataset_params"], "frame_shape": Field(list, None, nullable=True, item=int)})

ANIMATE_PARAMS = Section({
    **SCHEMA["animate_params"],
    # The original has no default; 'relative' works with a first-stage model, 'avd' needs train_avd.
    "mode": Field(str, "relative", choices=MODES),
    # 'affine' (default): the relative mode's covariance from its new affine (A·Aᵀ); 'driving': the
    # driving frame's covariance, as published (see modules/mraa/animation.py).
    "relative_covar": Field(str, "affine", choices=RELATIVE_COVAR),
    # MRAA's relative mode always scales the motion by the regions' hull areas: on by default here.
    "normalization_params": Section({
        "adapt_movement_scale": Field(BOOL, True),
        "use_relative_movement": Field(BOOL, True),
        "use_relative_jacobian": Field(BOOL, True),
    }, required=False),
}, required=False)

VISUALIZER_PARAMS = Section({**SCHEMA["visualizer_params"],
                             "region_bg_color": Field(list, [1, 1, 1], item=NUM, low=0, high=1)}, required=False)


def mraa_networks(model_params, region_predictor=None):
    """{'region_predictor', 'bg_predictor', 'generator', 'avd_network'} from a validated ``model_params``,
    built as the original's run.py builds them. ``region_predictor``: a class to use instead of MRAA's
    (FPB-FOMM's AWP variant)."""
    from modules.mraa import AVDNetwork, BGMotionPredictor, Generator, RegionPredictor

    num_regions, num_channels = model_params["num_regions"], model_params["num_channels"]
    revert = model_params["revert_axis_swap"]
    generator_params = dict(model_params["generator_params"])
    if generator_params.get("pixelwise_flow_predictor_params") is None:
        generator_params.pop("pixelwise_flow_predictor_params", None)
    region_class = region_predictor or RegionPredictor
    return {"region_predictor": region_class(num_regions=num_regions, num_channels=num_channels,
                                             estimate_affine=model_params["estimate_affine"],
                                             **model_params["region_predictor_params"]),
            "bg_predictor": BGMotionPredictor(num_channels=num_channels, **model_params["bg_predictor_params"]),
            "generator": Generator(num_regions=num_regions, num_channels=num_channels, revert_axis_swap=revert,
                                   **generator_params),
            "avd_network": AVDNetwork(num_regions=num_regions, revert_axis_swap=revert,
                                      **model_params["avd_network_params"])}


def _resolve_workers(section):
    if section is not None and section["num_workers"] is None:
        workers = section["dataloader_workers"]
        section["num_workers"] = DEFAULT_WORKERS if workers is None else workers


class Mraa:
    """MRAA: region predictor, background motion, generator, AVD network; two training stages."""

    name = "mraa"
    uses_prior = False
    sections = {"dataset_params": DATASET_PARAMS, "model_params": MODEL_PARAMS, "train_params": TRAIN_PARAMS,
                "train_avd_params": TRAIN_AVD_PARAMS, "animate_params": ANIMATE_PARAMS,
                "visualizer_params": VISUALIZER_PARAMS}
    stages = {"train": "train_params", "train_avd": "train_avd_params"}
    # Reconstruction drives with the background motion (as the original); 'avd' animation needs the AVD.
    animation_networks = ("region_predictor", "bg_predictor", "generator", "avd_network")
    # The AVD stage starts from a first-stage model; its AVD network (random in our first-stage
    # checkpoints, absent from the original's) is loaded when present.
    stage_networks = {"train_avd": ("region_predictor", "bg_predictor", "generator")}
    published_optimizers = {"train": ("optimizer_reconstruction",), "train_avd": ("optimizer_avd",)}
    # Its Logger.save_cpk stores the finished epoch as 'epoch_' + train_mode.
    published_epoch_keys = {"train": "epoch_reconstruction", "train_avd": "epoch_avd"}
    sync_batchnorm = ("region_predictor", "bg_predictor", "generator")

    def check(self, config, where):
        model = config["model_params"]
        channels = model["num_channels"]
        dataset = config["dataset_params"]
        if dataset["frame_shape"] is None:
            dataset["frame_shape"] = [DEFAULT_FRAME_SIZE, DEFAULT_FRAME_SIZE, channels]
        frame_shape = dataset["frame_shape"]
        if len(frame_shape) != 3 or frame_shape[2] != channels or min(frame_shape[:2]) < 1:
            raise ConfigError(f"{where}: 'dataset_params.frame_shape' must be [H, W, num_channels] with "
                              f"num_channels = {channels}, got {frame_shape}")
        _resolve_workers(config.get("train_params"))
        _resolve_workers(config.get("train_avd_params"))
        region = model["region_predictor_params"]
        has_affine = model["estimate_affine"] or region["pca_based"]
        if config["animate_params"]["mode"] == "avd" and not has_affine:
            raise ConfigError(f"{where}: 'animate_params.mode' avd needs region affines: set "
                              "model_params.estimate_affine or region_predictor_params.pca_based to True")
        flow = model["generator_params"]["pixelwise_flow_predictor_params"]
        if flow is not None and flow["use_covar_heatmap"] and not has_affine:
            raise ConfigError(f"{where}: 'pixelwise_flow_predictor_params.use_covar_heatmap' needs region "
                              "covariances: set model_params.estimate_affine or region_predictor_params.pca_based")
        avd = config.get("train_avd_params")
        if avd is not None and avd["batch_size"] < 2:
            raise ConfigError(f"{where}: 'train_avd_params.batch_size' must be at least 2 (the AVD network's "
                              f"BatchNorm needs two samples per batch), got {avd['batch_size']}")
        if config["animate_params"]["mode"] == "relative" and model["num_regions"] < 3:
            raise ConfigError(f"{where}: animate_params.mode relative scales motion by the regions' hull area, "
                              f"which needs model_params.num_regions >= 3, got {model['num_regions']}")

    def build_networks(self, model_params):
        return mraa_networks(model_params)

    def example_item(self, config, generator):
        """One random training sample as the dataset gives it (benchmarks, device checks)."""
        from frames_dataset import example_item

        return example_item(config, generator, self.uses_prior)

    def training(self, networks, config, device, stage="train"):
        from modules.mraa.training import MraaAvdTraining, MraaTraining

        if stage == "train_avd":
            return MraaAvdTraining(networks, config, device)
        return MraaTraining(networks, config, device)

    def driver(self, networks, config, device, precision="fp32", compile=False, batch_frames=8):
        from modules.mraa.driver import MraaDriver

        return MraaDriver(networks, config, device, precision, compile, batch_frames)


MRAA = Mraa()


FPB_DATASET_PARAMS = Section({**DATASET_PARAMS,
                              "prior_mode": Field(str, "per_frame", choices=("first_frame", "per_frame"))})


class FpbMraa(Mraa):
    """FPB-FOMM's MRAA_with_AWP (``fpb-mraa``): MRAA whose 18 regions are the facial prior's points
    (modules/mraa/awp_region_predictor.py). Each frame's own prior by default (``prior_mode:
    per_frame``: the original ran dlib on every frame); the equivariance-warped frame gets the prior
    moved by the warp."""

    name = "fpb-mraa"
    uses_prior = True
    sections = {**Mraa.sections, "dataset_params": FPB_DATASET_PARAMS}

    def check(self, config, where):
        super().check(config, where)
        model = config["model_params"]
        if model["num_regions"] != 18:
            raise ConfigError(f"{where}: method 'fpb-mraa' uses the 18 facial-prior points as regions: "
                              f"'model_params.num_regions' must be 18, got {model['num_regions']}")
        weights = config["train_params"]["loss_weights"] if config.get("train_params") else None
        if weights is not None and model["region_predictor_params"]["pca_based"] and not any(weights["perceptual"]):
            raise ConfigError(f"{where}: with pca_based regions (all from the prior) only the perceptual loss "
                              "trains anything: 'train_params.loss_weights.perceptual' must not be all 0")

    def build_networks(self, model_params):
        from modules.mraa.awp_region_predictor import RegionPredictor

        return mraa_networks(model_params, region_predictor=RegionPredictor)

    def training(self, networks, config, device, stage="train"):
        training = super().training(networks, config, device, stage)
        # With pca_based regions the AWP hourglass gets no gradient (as in the original).
        training.find_unused_parameters = True
        return training


FPB_MRAA = FpbMraa()
