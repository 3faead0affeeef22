"""The FOMM family as methods of the registry (methods.py): FP-FOMM (``fp-fomm``, 18 facial-prior
keypoints) and FOMM (``fomm``, learned keypoints). Their configs, networks, training step and
animation driver; the networks themselves are the published ones in this folder.
"""
from configuration import BOOL, NUM, ConfigError, Field, Section, train_section

MODEL_PARAMS = Section({
    "common_params": Section({
        "num_kp": Field(int, low=1),
        "num_channels": Field(int, 3, choices=(1, 3)),
        "estimate_jacobian": Field(BOOL, True),
        # Project addition: 'prior' (FP-FOMM) or 'learned' (FOMM); absent: 18 keypoints → prior.
        "keypoint_mode": Field(str, None, nullable=True, choices=("prior", "learned")),
        "align_corners": Field(BOOL, False),
    }),
    "kp_detector_params": Section({
        "temperature": Field(NUM, above=0),
        "block_expansion": Field(int, low=1),
        "max_features": Field(int, low=1),
        "scale_factor": Field(NUM, 1, above=0, high=1),
        "num_blocks": Field(int, low=1),
        "single_jacobian_map": Field(BOOL, False),
        "pad": Field(int, 0, low=0),
        "mask_sigma": Field(NUM, 0.75, above=0),
    }),
    "generator_params": Section({
        "block_expansion": Field(int, low=1),
        "max_features": Field(int, low=1),
        "num_down_blocks": Field(int, low=0),
        "num_bottleneck_blocks": Field(int, low=0),
        "estimate_occlusion_map": Field(BOOL, False),
        "dense_motion_params": Section({
            "block_expansion": Field(int, low=1),
            "max_features": Field(int, low=1),
            "num_blocks": Field(int, low=1),
            "scale_factor": Field(NUM, 1, above=0, high=1),
            "kp_variance": Field(NUM, 0.01, above=0),
        }, required=False),
    }),
    "discriminator_params": Section({
        "scales": Field(list, [1], item=NUM, above=0),
        "block_expansion": Field(int, low=1),
        "max_features": Field(int, low=1),
        "num_blocks": Field(int, low=1),
        "sn": Field(BOOL, False),
        "use_kp": Field(BOOL, False),
        "kp_variance": Field(NUM, 0.01, above=0),
    }),
})

TRAIN_PARAMS = train_section({
    "epoch_milestones": Field(list, [], item=int, low=0),
    "lr_generator": Field(NUM, 2.0e-4, low=0),
    "lr_discriminator": Field(NUM, 2.0e-4, low=0),
    "lr_kp_detector": Field(NUM, 2.0e-4, low=0),
    "scales": Field(list, [1, 0.5, 0.25, 0.125], item=NUM, above=0),
    "transform_params": Section({
        "sigma_affine": Field(NUM, 0.05, low=0),
        "sigma_tps": Field(NUM, 0.005, low=0),
        "points_tps": Field(int, 5, low=1),
    }, required=False),
    "loss_weights": Section({
        "generator_gan": Field(NUM, 0, low=0),
        "discriminator_gan": Field(NUM, 1, low=0),
        "feature_matching": Field(list, [10, 10, 10, 10], item=NUM, low=0),
        "perceptual": Field(list, [10, 10, 10, 10, 10], item=NUM, low=0),
        "equivariance_value": Field(NUM, 10, low=0),
        "equivariance_jacobian": Field(NUM, 10, low=0),
    }),
    # Project additions.
    "prior_equivariance": Field(str, "corrected", choices=("corrected", "reference")),
    "vgg_weights": Field(str, None, nullable=True),
})


def fomm_networks(model_params):
    """{'kp_detector', 'generator', 'discriminator'} built the FOMM way from a validated ``model_params``."""
    from modules.discriminator import MultiScaleDiscriminator
    from modules.generator import OcclusionAwareGenerator
    from modules.keypoint_detector import KPDetector

    common = model_params["common_params"]
    return {"kp_detector": KPDetector(**model_params["kp_detector_params"], **common),
            "generator": OcclusionAwareGenerator(**model_params["generator_params"], **common),
            "discriminator": MultiScaleDiscriminator(**model_params["discriminator_params"], **common)}


class FommFamily:
    """FP-FOMM or FOMM: the same networks and training, told apart by the keypoint mode."""

    sections = {"model_params": MODEL_PARAMS, "train_params": TRAIN_PARAMS}
    animation_networks = ("kp_detector", "generator")
    checkpoint_networks = ("kp_detector", "generator", "discriminator")
    # Under DDP on CUDA these networks get batch statistics over all GPUs (SyncBatchNorm).
    sync_batchnorm = ("kp_detector", "generator")
    # A published checkpoint whose discriminator does not fit the config (e.g. spectral norm on/off)
    # still fine-tunes: the published code trained a fresh discriminator then; this says so.
    optional_networks = ("discriminator",)
    # What the published training loop saved besides the networks (to continue such a run).
    published_optimizers = {"train": ("optimizer_generator", "optimizer_kp_detector", "optimizer_discriminator")}

    def __init__(self, name, keypoint_mode):
        self.name = name
        self.keypoint_mode = keypoint_mode
        # The dataset reads facial-prior keypoints for the frames (kpmaker files) when this is set.
        self.uses_prior = keypoint_mode == "prior"

    def check(self, config, where):
        common = config["model_params"]["common_params"]
        mode = common["keypoint_mode"]
        if mode is not None and mode != self.keypoint_mode:
            raise ConfigError(f"{where}: 'model_params.common_params.keypoint_mode' {mode!r} contradicts method "
                              f"{self.name!r} (which uses {self.keypoint_mode!r} keypoints); drop one of them")
        if self.keypoint_mode == "prior" and common["num_kp"] != 18:
            raise ConfigError(f"{where}: method {self.name!r} uses the 18 facial-prior keypoints: "
                              f"'model_params.common_params.num_kp' must be 18, got {common['num_kp']}")
        common["keypoint_mode"] = self.keypoint_mode
        frame_shape = config["dataset_params"]["frame_shape"]
        if len(frame_shape) != 3 or frame_shape[2] != common["num_channels"] or min(frame_shape[:2]) < 1:
            raise ConfigError(f"{where}: 'dataset_params.frame_shape' must be [H, W, num_channels] with "
                              f"num_channels = {common['num_channels']}, got {frame_shape}")

    def build_networks(self, model_params):
        return fomm_networks(model_params)

    def example_item(self, config, generator):
        """One random training sample as the dataset gives it (benchmarks, device checks)."""
        from frames_dataset import example_item

        return example_item(config, generator, self.uses_prior)

    def training(self, networks, config, device):
        from modules.training import FommTraining

        return FommTraining(networks, config["train_params"], device)

    def driver(self, networks, config, device, precision="fp32", compile=False, batch_frames=8):
        from inference import Animator

        return Animator(networks["kp_detector"], networks["generator"], device, precision, compile, batch_frames)


FP_FOMM = FommFamily("fp-fomm", "prior")
FOMM = FommFamily("fomm", "learned")
