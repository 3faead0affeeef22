"""Loading and validating the YAML configs (FOMM layout, plus this project's optional keys).

Published FOMM / FP-FOMM configs load unchanged; every key this project added is optional and has a
default. Any unknown or missing key, or a value of the wrong kind, stops the run before anything
heavy starts with one message naming the file and the key.
"""
import copy
import difflib

import yaml
from errors import InputError


class ConfigError(InputError, ValueError):
    """A config file that cannot be used as it is; the message says which key and what to do."""


class Field:
    """A leaf value: ``kind`` is a type or tuple of types (None allowed when ``nullable``)."""

    def __init__(self, kind, default=..., nullable=False, choices=None, item=None):
        self.kind, self.default, self.nullable, self.choices, self.item = kind, default, nullable, choices, item

    @property
    def required(self):
        return self.default is ...


class Section(dict):
    """A mapping with a fixed set of keys. ``open_keys`` accepts any extra keys (passed through)."""

    def __init__(self, fields, required=True, open_keys=False):
        super().__init__(fields)
        self.required = required
        self.open_keys = open_keys


NUM = (int, float)
BOOL = bool

_FLIP = Section({"horizontal_flip": Field(BOOL, False), "time_flip": Field(BOOL, False)}, required=False)
_JITTER = Section({k: Field(NUM, 0.0) for k in ("brightness", "contrast", "saturation", "hue")}, required=False)

SCHEMA = Section({
    "dataset_params": Section({
        "root_dir": Field(str),
        "frame_shape": Field(list, [256, 256, 3], item=int),
        "id_sampling": Field(BOOL, False),
        "pairs_list": Field(str, None, nullable=True),
        "augmentation_params": Section({"flip_param": _FLIP, "jitter_param": _JITTER}, required=False),
        # Project additions.
        "keypoint_dir": Field(str, None, nullable=True),  # default: <root_dir>/keypoints
        "prior_mode": Field(str, "first_frame", choices=("first_frame", "per_frame")),
        "strict_prior": Field(BOOL, False),
    }),
    "model_params": Section({
        "common_params": Section({
            "num_kp": Field(int),
            "num_channels": Field(int, 3),
            "estimate_jacobian": Field(BOOL, True),
            "keypoint_mode": Field(str, None, nullable=True, choices=("prior", "learned")),
            "align_corners": Field(BOOL, False),
        }),
        "kp_detector_params": Section({
            "temperature": Field(NUM),
            "block_expansion": Field(int),
            "max_features": Field(int),
            "scale_factor": Field(NUM, 1),
            "num_blocks": Field(int),
            "single_jacobian_map": Field(BOOL, False),
            "pad": Field(int, 0),
            "mask_sigma": Field(NUM, 0.75),
        }),
        "generator_params": Section({
            "block_expansion": Field(int),
            "max_features": Field(int),
            "num_down_blocks": Field(int),
            "num_bottleneck_blocks": Field(int),
            "estimate_occlusion_map": Field(BOOL, False),
            "dense_motion_params": Section({
                "block_expansion": Field(int),
                "max_features": Field(int),
                "num_blocks": Field(int),
                "scale_factor": Field(NUM, 1),
                "kp_variance": Field(NUM, 0.01),
            }, required=False),
        }),
        "discriminator_params": Section({
            "scales": Field(list, [1], item=NUM),
            "block_expansion": Field(int),
            "max_features": Field(int),
            "num_blocks": Field(int),
            "sn": Field(BOOL, False),
            "use_kp": Field(BOOL, False),
            "kp_variance": Field(NUM, 0.01),
        }),
    }),
    "train_params": Section({
        "num_epochs": Field(int),
        "num_repeats": Field(int, 1),
        "epoch_milestones": Field(list, [], item=int),
        "lr_generator": Field(NUM, 2.0e-4),
        "lr_discriminator": Field(NUM, 2.0e-4),
        "lr_kp_detector": Field(NUM, 2.0e-4),
        "batch_size": Field(int),
        "scales": Field(list, [1, 0.5, 0.25, 0.125], item=NUM),
        "checkpoint_freq": Field(int, 1),
        "transform_params": Section({
            "sigma_affine": Field(NUM, 0.05),
            "sigma_tps": Field(NUM, 0.005),
            "points_tps": Field(int, 5),
        }, required=False),
        "loss_weights": Section({
            "generator_gan": Field(NUM, 0),
            "discriminator_gan": Field(NUM, 1),
            "feature_matching": Field(list, [10, 10, 10, 10], item=NUM),
            "perceptual": Field(list, [10, 10, 10, 10, 10], item=NUM),
            "equivariance_value": Field(NUM, 10),
            "equivariance_jacobian": Field(NUM, 10),
        }),
        # Project additions.
        "prior_equivariance": Field(str, "corrected", choices=("corrected", "reference")),
        "vgg_weights": Field(str, None, nullable=True),
        "num_workers": Field(int, 2),
        "precision": Field(str, "fp32", choices=("fp32", "bf16")),
        "log_freq": Field(int, 10),
    }, required=False),
    "reconstruction_params": Section({
        "num_videos": Field(int, None, nullable=True),
        "format": Field(str, ".mp4"),
        # Project addition: playback rate of the written videos.
        "fps": Field(NUM, 25),
    }, required=False),
    "animate_params": Section({
        "num_pairs": Field(int, None, nullable=True),
        "format": Field(str, ".mp4"),
        "normalization_params": Section({
            "adapt_movement_scale": Field(BOOL, False),
            "use_relative_movement": Field(BOOL, True),
            "use_relative_jacobian": Field(BOOL, True),
        }, required=False),
        "fps": Field(NUM, 25),
        "batch_frames": Field(int, 8),
        # Project additions: gray output for gray-trained checkpoints (auto: when the model has one
        # channel, or the target and the driving clip are both gray); columns of the PNG strip.
        "grayscale": Field(str, "auto", choices=("auto", "gray", "color")),
        "strip_frames": Field(int, 12),
    }, required=False),
    "visualizer_params": Section({
        "kp_size": Field(int, 5),
        "draw_border": Field(BOOL, True),
        "colormap": Field(str, "gist_rainbow"),
    }, required=False),
})


def _is_kind(value, kind):
    # bool is an int subclass; a YAML `true` must not pass as a number, nor 1 as a bool.
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)


def _kind_name(kind):
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("number" if k is float else {int: "integer", bool: "true/false", str: "string",
                                                      list: "list"}.get(k, k.__name__) for k in kinds)


def _all_defaults(section):
    return all(_all_defaults(v) if isinstance(v, Section) else not v.required for v in section.values())


def _validate(section, data, path, where):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {path or 'the file'} must be a mapping of keys, got {type(data).__name__}")
    out = {}
    for key, value in data.items():
        if key not in section:
            if section.open_keys:
                out[key] = value
                continue
            hint = difflib.get_close_matches(str(key), list(section), n=1)
            hint = f" (did you mean '{hint[0]}'?)" if hint else f" (known keys: {', '.join(section)})"
            raise ConfigError(f"{where}: unknown key '{path}{key}'{hint}")
    for key, spec in section.items():
        full = f"{path}{key}"
        if isinstance(spec, Section):
            if key in data and data[key] is not None:
                out[key] = _validate(spec, data[key], full + ".", where)
            elif spec.required:
                raise ConfigError(f"{where}: missing section '{full}'")
            else:
                # An absent optional section gets its defaults, or None where it has required keys
                # (e.g. no train_params in a config used only to animate).
                out[key] = _validate(spec, {}, full + ".", where) if _all_defaults(spec) else None
            continue
        if key not in data:
            if spec.required:
                raise ConfigError(f"{where}: missing key '{full}'")
            out[key] = copy.deepcopy(spec.default)
            continue
        value = data[key]
        if value is None and (spec.nullable or spec.default is None):
            out[key] = None
            continue
        if spec.kind is float or spec.kind == NUM:
            if isinstance(value, str):
                try:  # YAML 1.1 reads 2e-4 (no dot) as a string
                    value = float(value)
                except ValueError:
                    pass
        if not _is_kind(value, spec.kind):
            raise ConfigError(f"{where}: '{full}' must be {_kind_name(spec.kind)}, got {value!r}")
        if spec.choices is not None and value not in spec.choices:
            raise ConfigError(f"{where}: '{full}' must be one of {', '.join(map(str, spec.choices))}, got {value!r}")
        if spec.item is not None:
            for element in value:
                if not _is_kind(element, spec.item):
                    raise ConfigError(f"{where}: every entry of '{full}' must be {_kind_name(spec.item)}, got {element!r}")
        out[key] = value
    return out


def validate_config(data, where="config"):
    """Validate a config mapping and fill in defaults. Returns a new dict; raises ConfigError."""
    config = _validate(SCHEMA, data if data is not None else {}, "", where)
    common = config["model_params"]["common_params"]
    frame_shape = config["dataset_params"]["frame_shape"]
    if len(frame_shape) != 3 or frame_shape[2] != common["num_channels"]:
        raise ConfigError(f"{where}: 'dataset_params.frame_shape' must be [H, W, num_channels] with "
                          f"num_channels = {common['num_channels']}, got {frame_shape}")
    return config


def load_config(path):
    """Read a YAML config (safe_load), validate it, fill in defaults."""
    try:
        with open(path) as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{line}: {getattr(error, 'problem', error)}") from None
    return validate_config(data, where=str(path))


def build_networks(model_params):
    """(kp_detector, generator, discriminator) built the FOMM way from ``model_params``."""
    from modules.discriminator import MultiScaleDiscriminator
    from modules.generator import OcclusionAwareGenerator
    from modules.keypoint_detector import KPDetector

    common = model_params["common_params"]
    kp_detector = KPDetector(**model_params["kp_detector_params"], **common)
    generator = OcclusionAwareGenerator(**model_params["generator_params"], **common)
    discriminator = MultiScaleDiscriminator(**model_params["discriminator_params"], **common)
    return kp_detector, generator, discriminator
