"""Loading and validating the YAML configs (FOMM layout, plus this project's optional keys).

Published FOMM / FP-FOMM configs load unchanged; every key this project added is optional and has a
default. Any unknown or missing key, or a value of the wrong kind, stops the run before anything
heavy starts with one message naming the file and the key.
"""
import copy
import difflib
import os

import yaml
from errors import InputError


class ConfigError(InputError, ValueError):
    """A config file that cannot be used as it is; the message says which key and what to do."""


class Field:
    """A leaf value: ``kind`` is a type or tuple of types (None allowed when ``nullable``).

    ``low`` / ``high``: the allowed range of a number (or of every entry of a list), inclusive;
    ``above``: an exclusive lower bound (e.g. a temperature must be > 0).
    """

    def __init__(self, kind, default=..., nullable=False, choices=None, item=None, low=None, high=None, above=None):
        self.kind, self.default, self.nullable, self.choices, self.item = kind, default, nullable, choices, item
        self.low, self.high, self.above = low, high, above

    def range_problem(self, value):
        """None when ``value`` (a number) is in range, else the allowed range in words."""
        if self.above is not None and not value > self.above:
            return f"greater than {self.above}"
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            if self.high is None:
                return f"at least {self.low}"
            if self.low is None:
                return f"at most {self.high}"
            return f"between {self.low} and {self.high}"
        return None

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
# torchvision's ColorJitter ranges: factors ≥ 0, hue a fraction of the colour wheel in 0..0.5.
_JITTER = Section({**{k: Field(NUM, 0.0, low=0) for k in ("brightness", "contrast", "saturation")},
                   "hue": Field(NUM, 0.0, low=0, high=0.5)}, required=False)
# FOMM's geometric augmentations (augmentation.py checks shapes and ranges). Each key is required
# inside its section, so an absent section stays None (off) instead of switching on with defaults.
_CROP = Section({"size": Field(list, item=int, low=1)}, required=False)
_RESIZE = Section({"ratio": Field(list, item=NUM, above=0),
                   "interpolation": Field(str, "nearest", choices=("nearest", "bilinear"))}, required=False)
_ROTATION = Section({"degrees": Field((int, float, list))}, required=False)

# train_params keys that the generic trainer reads, shared by every method.
TRAIN_COMMON = {
    "num_epochs": Field(int, low=0),
    "num_repeats": Field(int, 1, low=1),
    "batch_size": Field(int, low=1),
    "checkpoint_freq": Field(int, 1, low=1),
    # Project additions.
    "num_workers": Field(int, 2, low=0),
    "precision": Field(str, "fp32", choices=("fp32", "bf16")),
    "log_freq": Field(int, 10, low=1),
    # When NaN/inf losses and gradient norms are checked: every step (before it is applied), at log
    # intervals (no host synchronisation per step; nothing is saved after a bad step), or auto
    # (every step on the CPU, at log intervals on CUDA).
    "finite_check": Field(str, "auto", choices=("auto", "step", "log")),
}

SCHEMA = Section({
    "dataset_params": Section({
        "root_dir": Field(str),
        "frame_shape": Field(list, [256, 256, 3], item=int, low=1),
        "id_sampling": Field(BOOL, False),
        "pairs_list": Field(str, None, nullable=True),
        "augmentation_params": Section({"flip_param": _FLIP, "rotation_param": _ROTATION, "resize_param": _RESIZE,
                                        "crop_param": _CROP, "jitter_param": _JITTER}, required=False),
        # Project additions.
        "keypoint_dir": Field(str, None, nullable=True),  # default: <root_dir>/keypoints
        "prior_mode": Field(str, "first_frame", choices=("first_frame", "per_frame")),
        "strict_prior": Field(BOOL, False),
        # natural: img9 before img10; lexicographic: plain string order, as the published reader.
        "frame_order": Field(str, "natural", choices=("natural", "lexicographic")),
        # The frame a first_frame prior comes from: the first in frame_order, or the name that sorts
        # first as a string (the published kpmaker's os.listdir(clip)[0] on Windows).
        "prior_frame": Field(str, "first", choices=("first", "lexicographic_first")),
    }),
    # model_params and train_params: each method's own (methods.py; FOMM family: modules/method.py).
    "reconstruction_params": Section({
        "num_videos": Field(int, None, nullable=True, low=1),
        "format": Field(str, ".mp4"),
        # Project addition: playback rate of the written videos.
        "fps": Field(NUM, 25, above=0),
    }, required=False),
    "animate_params": Section({
        "num_pairs": Field(int, None, nullable=True, low=1),
        "format": Field(str, ".mp4"),
        "normalization_params": Section({
            "adapt_movement_scale": Field(BOOL, False),
            "use_relative_movement": Field(BOOL, True),
            "use_relative_jacobian": Field(BOOL, True),
        }, required=False),
        "fps": Field(NUM, 25, above=0),
        "batch_frames": Field(int, 8, low=1),
        # Project additions: gray output for gray-trained checkpoints (auto: when the model has one
        # channel, or the target and the driving clip are both gray); columns of the PNG strip.
        "grayscale": Field(str, "auto", choices=("auto", "gray", "color")),
        "strip_frames": Field(int, 12, low=1),
    }, required=False),
    "visualizer_params": Section({
        "kp_size": Field(int, 5, low=1),
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
        numbers = value if isinstance(value, list) else [value]
        for number in numbers:
            problem = spec.range_problem(number) if _is_kind(number, NUM) else None
            if problem:
                what = f"every entry of '{full}'" if isinstance(value, list) else f"'{full}'"
                raise ConfigError(f"{where}: {what} must be {problem}, got {number!r}")
        out[key] = value
    return out


def train_section(fields):
    """A method's ``train_params`` section: its own keys plus the keys the generic trainer reads
    (epochs, repeats, batch, checkpoints, loader, precision, logging)."""
    return Section({**TRAIN_COMMON, **fields}, required=False)


def schema_for(method):
    """The whole schema of a method: the base sections with the method's own replacing them."""
    return Section({**SCHEMA, **method.sections})


def validate_config(data, where="config"):
    """Validate a config mapping and fill in defaults. Returns a new dict; raises ConfigError.

    The method (``model_params.method``, or inferred from the config's shape: methods.py) decides
    the schema of ``model_params`` and ``train_params``; the validated config always names it.
    """
    import methods

    data = data if data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the file must be a mapping of sections, got {type(data).__name__}")
    if "model_params" not in data or data["model_params"] is None:
        raise ConfigError(f"{where}: missing section 'model_params'")
    try:
        name = methods.method_of(data["model_params"], where)
    except methods.MethodError as error:
        raise ConfigError(str(error)) from None
    method = methods.get(name)
    data = dict(data)
    data["model_params"] = {k: v for k, v in data["model_params"].items() if k != "method"}
    config = _validate(schema_for(method), data, "", where)
    config["model_params"]["method"] = name
    check = getattr(method, "check", None)
    if check is not None:
        check(config, where)
    frame_shape = config["dataset_params"]["frame_shape"]
    if len(frame_shape) != 3 or min(frame_shape[:2]) < 1 or frame_shape[2] not in (1, 3):
        raise ConfigError(f"{where}: 'dataset_params.frame_shape' must be [height, width, channels] with "
                          f"positive sizes and 1 or 3 channels, got {frame_shape}")
    return config


def load_config(path):
    """Read a YAML config (safe_load), validate it, fill in defaults."""
    if os.path.isdir(path):
        raise ConfigError(f"{path}: is a folder, not a config file; pass a YAML file such as "
                          "config/your_dataset_train.yaml")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except PermissionError:
        raise ConfigError(f"{path}: config file cannot be read (permission denied)") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not a text (UTF-8) file at byte {error.start}; a config is a YAML text "
                          "file") from None
    except OSError as error:
        raise ConfigError(f"{path}: config file cannot be read ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{line}: {getattr(error, 'problem', error)}") from None
    return validate_config(data, where=str(path))


def build_networks(model_params):
    """(kp_detector, generator, discriminator) of a FOMM-family ``model_params`` (the tuple FOMM's
    scripts unpack). Every method: ``methods.build_networks``, which returns a dict."""
    from modules.method import fomm_networks

    networks = fomm_networks(model_params)
    return networks["kp_detector"], networks["generator"], networks["discriminator"]
