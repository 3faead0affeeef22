"""The TPS family on the registry (methods.py): TPSMM (``tpsmm``), TPSMM-ME (``tpsmm-me``) and
FMEG-TPSRAU (``tpsrau``).

- TPSMM (Zhao & Zhang, CVPR 2022; yoyo-nb/Thin-Plate-Spline-Motion-Model): learned keypoints,
  K thin-plate-spline transforms of 5 points, background affine, multi-resolution occlusion,
  then the AVD stage (``run.py --mode train_avd``). Its published configs (config/tpsmm/) load as
  they are (recognised by ``common_params.num_tps``).
- TPSMM-ME (HowToNameMe/micro-expression, MEGC2022): TPSMM with ``num_kps`` 8 points per TPS, a
  masked L1 loss on the face region of the prediction (``loss_weights.fg_warp_loss``; the face
  region here is the convex hull of the frame's 68 dlib landmarks from kpmaker, not the original's
  face-parsing masks), perspective augmentation, relative animation.
- FMEG-TPSRAU (MEA-LAB-421/MEGC2022-Generation, ACM MM'22): the TPS keypoints are 50 of the 68 dlib
  landmarks of the clip's first frame (for source and driving), not learned; the AU branch feeds
  the driving − source AU difference (aumaker's intensities / 5) as 17 channels into every decoder
  level of the inpainting network. ``common_params.au_branch: False`` is FMEG-TPS.
"""
import copy

from configuration import BOOL, NUM, SCHEMA, ConfigError, Field, Section, train_section

# dlib's 68-point indices (0-based) of FMEG-TPSRAU's 50 keypoints, as its kpmaker.py lists them:
# 9 jaw points, then 18–28 and 31–60 (brows, nose, eyes, outer lips). Groups of 5 in this order make
# the 10 TPS transforms.
TPSRAU_LANDMARKS = (1, 2, 5, 8, 9, 10, 13, 16, 17) + tuple(range(18, 29)) + tuple(range(31, 61))

COMMON = {
    "num_tps": Field(int, low=1),
    "num_channels": Field(int, 3, choices=(3,)),   # the keypoint detector is an RGB ResNet-18
    "bg": Field(BOOL, False),
    "multi_mask": Field(BOOL, True),
    # TPSMM-ME's key: control points per TPS (TPSMM: 5).
    "num_kps": Field(int, 5, low=3),
    # Project addition: base width of the keypoint detector's and background predictor's ResNet-18
    # (64 = torchvision's, as published; `make demo` ships 16 to keep its checkpoints small).
    "resnet_width": Field(int, 64, low=4),
}

MODEL_PARAMS = Section({
    "common_params": Section(COMMON),
    "generator_params": Section({
        "block_expansion": Field(int, low=1),
        "max_features": Field(int, low=1),
        "num_down_blocks": Field(int, low=1),
    }),
    "dense_motion_params": Section({
        "block_expansion": Field(int, low=1),
        "max_features": Field(int, low=1),
        "num_blocks": Field(int, low=1),
        "scale_factor": Field(NUM, 0.25, above=0, high=1),
        "kp_variance": Field(NUM, 0.01, above=0),
    }),
    "avd_network_params": Section({
        "id_bottle_size": Field(int, 64, low=1),
        "pose_bottle_size": Field(int, 64, low=1),
    }, required=False),
})

TPSRAU_MODEL_PARAMS = Section({
    **MODEL_PARAMS,
    "common_params": Section({
        **COMMON,
        "num_tps": Field(int, 10, choices=(10,)),      # 50 landmarks = 10 TPS × 5 points
        "num_kps": Field(int, 5, choices=(5,)),
        "au_branch": Field(BOOL, True),               # False: FMEG-TPS
        # 'normalized': landmark pixels → [-1, 1] (as the networks' grids); 'published': the
        # original's sigmoid(pixels)·2 − 1, which sends every landmark to ≈ (1, 1).
        "landmark_keypoints": Field(str, "normalized", choices=("normalized", "published")),
    }),
})

LOSS_WEIGHTS = {
    "perceptual": Field(list, [10, 10, 10, 10, 10], item=NUM, low=0),
    "equivariance_value": Field(NUM, 10, low=0),
    "warp_loss": Field(NUM, 10, low=0),
    "bg": Field(NUM, 10, low=0),
}

TRAIN_FIELDS = {
    "epoch_milestones": Field(list, [], item=int, low=0),
    "lr_generator": Field(NUM, 2.0e-4, low=0),
    "scales": Field(list, [1, 0.5, 0.25, 0.125], item=NUM, above=0, high=1),
    "dropout_epoch": Field(int, 0, low=0),
    "dropout_maxp": Field(NUM, 0.3, low=0, high=0.99),
    "dropout_startp": Field(NUM, 0.0, low=0, high=0.99),
    "dropout_inc_epoch": Field(int, 10, low=1),
    "bg_start": Field(int, 0, low=0),
    "transform_params": Section({
        "sigma_affine": Field(NUM, 0.05, low=0),
        "sigma_tps": Field(NUM, 0.005, low=0),
        "points_tps": Field(int, 5, low=1),
    }, required=False),
    "loss_weights": Section(LOSS_WEIGHTS, required=False),
    # The published loader's worker count; this project's is num_workers (kept apart on purpose:
    # the published 12-24 workers do not fit most machines).
    "dataloader_workers": Field(int, None, nullable=True, low=0),
    # Project additions: VGG19 weights file; max |grad| of the clipped networks (the original's 10).
    "vgg_weights": Field(str, None, nullable=True),
    "clip_grad_max": Field(NUM, 10, above=0),
}

TRAIN_PARAMS = train_section(TRAIN_FIELDS)

ME_TRAIN_PARAMS = train_section({
    **TRAIN_FIELDS,
    "loss_weights": Section({**LOSS_WEIGHTS, "fg_warp_loss": Field(NUM, 100, low=0)}, required=False),
    # 'weighted': fg_warp_loss · mean|m·(prediction − driving)|; 'published': the original adds the
    # term unweighted (its weight only switches it on) and only while the bg predictor runs.
    "face_loss": Field(str, "weighted", choices=("weighted", "published")),
})

TRAIN_AVD_PARAMS = train_section({
    "epoch_milestones": Field(list, [], item=int, low=0),
    "lr": Field(NUM, 1.0e-3, low=0),
    "lambda_shift": Field(NUM, 1, low=0),
    "random_scale": Field(NUM, 0.25, low=0, high=0.99),
    "dataloader_workers": Field(int, None, nullable=True, low=0),
    # mgif-256.yaml's key; the published AVD loss has no affine term, so it changes nothing.
    "lambda_affine": Field(NUM, 0, low=0),
    # 'eval' (default): the stage-1 keypoint detector in eval mode; 'as_is': the published train mode.
    "kp_detector_mode": Field(str, "eval", choices=("eval", "as_is")),
})

_DATASET = dict(SCHEMA["dataset_params"])
# The published TPSMM configs say frame_shape: null (frames read at their own size); here frames are
# read at one size, 256×256 unless given (check() fills it in).
_DATASET["frame_shape"] = Field(list, None, nullable=True, item=int, low=1)
DATASET_PARAMS = Section(_DATASET)

_ME_AUGMENTATION = Section({**SCHEMA["dataset_params"]["augmentation_params"],
                            "perspective_param": Section({"distortion_scale": Field(NUM, 0.1, low=0, high=1),
                                                          "p": Field(NUM, 0.5, low=0, high=1)}, required=False)},
                           required=False)
ME_DATASET_PARAMS = Section({**_DATASET, "augmentation_params": _ME_AUGMENTATION})

TPSRAU_DATASET_PARAMS = Section({
    **_DATASET,
    "au_dir": Field(str, None, nullable=True),            # default <root_dir>/aus (aumaker.py)
    "au_noise": Field(NUM, 0.02, low=0, high=1),          # ± uniform noise on the /5 intensities (training)
})

ANIMATE_PARAMS = Section({**SCHEMA["animate_params"],
                          # demo.py's --mode; reconstruction always drives with the keypoints as they are.
                          "mode": Field(str, "relative", choices=("standard", "relative", "avd"))},
                         required=False)


class TpsFamily:
    """TPSMM and its two MEGC variants: one spec class, told apart by ``variant``."""

    animation_networks = ("kp_detector", "dense_motion_network", "inpainting_network", "avd_network")
    stage_networks = {"train_avd": ("kp_detector", "dense_motion_network", "inpainting_network")}
    stages = {"train": "train_params", "train_avd": "train_avd_params"}
    # The published train.py / train_avd.py optimiser names (a published run continues with them).
    published_optimizers = {"train": ("optimizer",), "train_avd": ("optimizer_avd",)}
    optional_networks = ()
    uses_prior = False   # landmarks come from kpmaker files directly (modules/tpsmm/dataset.py)

    def __init__(self, name, variant):
        self.name = name
        self.variant = variant
        if variant == "tpsrau":
            # Its keypoints are landmarks: no AVD stage (nothing to disentangle from a detector).
            self.stages = {"train": "train_params"}
        self.sections = {"model_params": TPSRAU_MODEL_PARAMS if variant == "tpsrau" else MODEL_PARAMS,
                         "train_params": ME_TRAIN_PARAMS if variant == "me" else TRAIN_PARAMS,
                         "train_avd_params": TRAIN_AVD_PARAMS,
                         "dataset_params": {"me": ME_DATASET_PARAMS, "tpsrau": TPSRAU_DATASET_PARAMS}.get(
                             variant, DATASET_PARAMS),
                         "animate_params": ANIMATE_PARAMS}

    def check(self, config, where):
        common = config["model_params"]["common_params"]
        dataset = config["dataset_params"]
        if dataset["frame_shape"] is None:
            dataset["frame_shape"] = [256, 256, common["num_channels"]]
        shape = dataset["frame_shape"]
        if len(shape) != 3 or shape[2] != common["num_channels"]:
            raise ConfigError(f"{where}: 'dataset_params.frame_shape' must be [H, W, {common['num_channels']}], "
                              f"got {shape}")
        if config["model_params"]["avd_network_params"] is None:
            config["model_params"]["avd_network_params"] = {"id_bottle_size": 64, "pose_bottle_size": 64}
        dense = config["model_params"]["dense_motion_params"]
        if common["multi_mask"] and 1 / dense["scale_factor"] not in (1, 2, 4):
            raise ConfigError(f"{where}: 'model_params.dense_motion_params.scale_factor' must be 1, 0.5 or 0.25 "
                              "with multi_mask (four occlusion masks), got " + str(dense["scale_factor"]))
        down = config["model_params"]["generator_params"]["num_down_blocks"]
        if common["multi_mask"] and down != 3:
            raise ConfigError(f"{where}: 'model_params.generator_params.num_down_blocks' must be 3 with multi_mask "
                              f"(the four occlusion masks are one per level), got {down}")
        train = config.get("train_params")
        if train is not None and train["loss_weights"] is None:
            train["loss_weights"] = {k: copy.deepcopy(f.default) for k, f in
                                     self.sections["train_params"]["loss_weights"].items()}

    def build_networks(self, model_params):
        from modules.tpsmm import AVDNetwork, BGMotionPredictor, DenseMotionNetwork, InpaintingNetwork, KPDetector
        from modules.tpsmm.keypoint_detector import LandmarkKeypoints

        common = dict(model_params["common_params"])
        tpsrau = self.variant == "tpsrau"
        au_branch = common.pop("au_branch", False)
        landmark_mode = common.pop("landmark_keypoints", None)
        width = common.pop("resnet_width")
        networks = {
            "kp_detector": (LandmarkKeypoints(common["num_tps"], landmark_mode) if tpsrau
                            else KPDetector(**common, resnet_width=width)),
            "dense_motion_network": DenseMotionNetwork(**model_params["dense_motion_params"], **common),
            "inpainting_network": InpaintingNetwork(**model_params["generator_params"], **common,
                                                    num_cond_channels=17 if au_branch else 0),
            "avd_network": AVDNetwork(num_tps=common["num_tps"], num_kps=common["num_kps"],
                                      **model_params["avd_network_params"]),
        }
        if common["bg"]:
            networks["bg_predictor"] = BGMotionPredictor(width)
        return networks

    def example_item(self, config, generator):
        """One random training sample shaped as this variant's dataset gives it (benchmarks, device
        checks): frames; TPSMM-ME adds face masks, TPSRAU its 50 landmark keypoints and the AU condition."""
        import torch

        from frames_dataset import example_item
        from modules.facial_prior import fallback_prior

        item = example_item(config, generator, uses_prior=False)
        h, w = config["dataset_params"]["frame_shape"][:2]
        if self.variant == "me":
            mask = torch.zeros(1, h, w)
            mask[:, h // 4:3 * h // 4, w // 4:3 * w // 4] = 1
            item.update(source_mask=mask, driving_mask=mask.clone())
        elif self.variant == "tpsrau":
            # Points spread over the face box, in pixels as kpmaker's landmarks (the template's box).
            centre = fallback_prior((h, w)).mean(dim=0)
            points = centre + (torch.rand(len(TPSRAU_LANDMARKS), 2, generator=generator) - 0.5) * min(h, w) / 2
            item.update(source_keypoints=points, driving_keypoints=points.clone(),
                        au_cond=(torch.rand(17, generator=generator) - 0.5) * 0.2)
        return item

    def build_dataset(self, config, is_train=True, validate=True):
        from modules.tpsmm.dataset import build_dataset

        return build_dataset(config, self.variant, is_train, validate)

    def training(self, networks, config, device, stage="train"):
        from modules.tpsmm.training import TpsAvdTraining, TpsTraining

        if stage == "train_avd":
            return TpsAvdTraining(networks, config, device)
        return TpsTraining(networks, config, device, self.variant)

    def driver(self, networks, config, device, precision="fp32", compile=False, batch_frames=8):
        from modules.tpsmm.driver import TpsDriver

        return TpsDriver(networks, config, device, precision, compile, batch_frames, self.variant)


TPSMM = TpsFamily("tpsmm", "tpsmm")
TPSMM_ME = TpsFamily("tpsmm-me", "me")
TPSRAU = TpsFamily("tpsrau", "tpsrau")
