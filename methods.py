"""The methods this project implements: one registry line each.

    import methods
    config = configuration.load_config("config/your_dataset_train.yaml")
    method = methods.get(config["model_params"]["method"])          # 'fp-fomm'
    networks = methods.build_networks(config["model_params"])        # {'kp_detector': ..., 'generator': ..., ...}

A method is a folder of networks (``modules/`` for the FOMM family, ``modules/<original>/`` for the
others, with the original's module, class and parameter names), a config, and one line below naming
its *spec*: an object that says

    name              the registry name (``model_params.method``)
    uses_prior        whether its frames need facial-prior keypoints (kpmaker files)
    sections          {section: configuration.Section} replacing the base schema's sections
                      (model_params always; train_params / animate_params where the method differs)
    check(config, where)             value checks across sections, after validation (optional)
    build_networks(model_params)     {name: nn.Module}, keyed by the names of the original's checkpoints
    animation_networks               names an animation checkpoint must hold
    training(networks, config, device)  the training step: optimisers, schedulers, phases (train.py)
    driver(networks, config, device, precision, compile, batch_frames)  the animation driver (inference.py)
    build_dataset(config, is_train, validate)   its training data, where frames_dataset's does not do
    stages, stage_networks, published_optimizers, optional_networks, sync_batchnorm   (optional: train.py)

``sections``, ``check`` and ``build_networks`` are all the config loader and notebooks need; the
training and animation parts are imported only when used. A spec is given as ``"module:attribute"``
so that importing this registry imports no networks. Tests and notebooks may ``register`` their
own spec objects.

Where a config has no ``model_params.method``, the method is inferred from the config's shape in
the order of INFERENCE below, so the published config families load unchanged.
"""
import importlib

from errors import InputError


class MethodError(InputError):
    """An unknown method name, or a config whose method cannot be told."""


_SPECS = {}        # name → spec object or "module:attribute"
_INFERENCE = []    # (name, predicate(raw model_params) → bool), tried in order


def register(name, spec, infer=None):
    """Add a method. ``spec``: an object as described above, or ``"module:attribute"`` naming one.
    ``infer(raw model_params dict) → bool`` recognises its configs when they do not name a method."""
    _SPECS[name] = spec
    if infer is not None:
        _INFERENCE.append((name, infer))


def unregister(name):
    """Remove a method (tests that register their own)."""
    _SPECS.pop(name, None)
    _INFERENCE[:] = [(n, f) for n, f in _INFERENCE if n != name]


def names():
    """Registered method names, in registration order."""
    return list(_SPECS)


def get(name):
    """The spec of method ``name`` (imported on first use)."""
    if name not in _SPECS:
        raise MethodError(f"unknown method {name!r}: model_params.method must be one of {', '.join(_SPECS)}")
    spec = _SPECS[name]
    if isinstance(spec, str):
        module, _, attribute = spec.partition(":")
        spec = getattr(importlib.import_module(module), attribute)
        _SPECS[name] = spec
    return spec


def method_of(model_params, where="config"):
    """The method a raw (not yet validated) ``model_params`` mapping is for: its ``method`` key, else
    the first INFERENCE rule that matches."""
    if not isinstance(model_params, dict):
        raise MethodError(f"{where}: 'model_params' must be a mapping of keys")
    name = model_params.get("method")
    if name is not None:
        if name not in _SPECS:
            raise MethodError(f"{where}: unknown 'model_params.method' {name!r}; known methods: "
                              f"{', '.join(_SPECS)}")
        return name
    for candidate, matches in _INFERENCE:
        if matches(model_params):
            return candidate
    raise MethodError(f"{where}: cannot tell the method from 'model_params'; name it with model_params.method "
                      f"(one of {', '.join(_SPECS)})")


def build_networks(model_params):
    """The method's networks from a validated ``model_params``: {name: nn.Module}, named as the
    original's checkpoints name them."""
    return get(model_params["method"]).build_networks(model_params)


# ------------------------------------------------------------------------------------------------
# The registry. Inference rules are tried in this order.

def _common(model_params):
    common = model_params.get("common_params")
    return common if isinstance(common, dict) else {}


def _fomm_keypoint_mode(model_params):
    """'prior' or 'learned' for a FOMM-family config: keypoint_mode, else 18 keypoints → prior."""
    mode = _common(model_params).get("keypoint_mode")
    if mode is not None:
        return mode
    return "prior" if _common(model_params).get("num_kp") == 18 else "learned"


register("fp-fomm", "modules.method:FP_FOMM",
         infer=lambda mp: "kp_detector_params" in mp and _fomm_keypoint_mode(mp) == "prior")
register("fomm", "modules.method:FOMM",
         infer=lambda mp: "kp_detector_params" in mp and _fomm_keypoint_mode(mp) == "learned")
register("fpb-fomm", "modules.fpb_fomm.method:FPB_FOMM")
register("ulme-gan", "modules.ganimation.method:ULME_GAN")
register("ganimation", "modules.ganimation.method:GANIMATION")
register("tpsmm", "modules.tpsmm.method:TPSMM", infer=lambda mp: "num_tps" in _common(mp))
register("tpsmm-me", "modules.tpsmm.method:TPSMM_ME")
register("tpsrau", "modules.tpsmm.method:TPSRAU")
register("mraa", "modules.mraa.method:MRAA", infer=lambda mp: "region_predictor_params" in mp)
register("fpb-mraa", "modules.mraa.method:FPB_MRAA")
