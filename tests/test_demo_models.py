"""The shipped demo checkpoints (demo_models/, tools/train_demo_models.py) load strictly in the current
code: a network change that orphans them fails here, not in someone's `make demo`."""
import hashlib
import json
from pathlib import Path

import pytest
import torch

import methods
from checkpoint import load_networks, read_checkpoint
from configuration import load_config

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "demo_models"
MANIFEST = json.loads((MODELS / "manifest.json").read_text()) if (MODELS / "manifest.json").is_file() else None
ENTRIES = sorted((MANIFEST or {}).get("methods", {}).items())
SIZE_LIMIT = 10 << 20   # "a few MB each" (TPSMM's ResNet-18s at resnet_width 16: 30 MB at the published width)


def test_the_manifest_ships_models():
    assert MANIFEST is not None, "demo_models/manifest.json is missing"
    assert ENTRIES, "the manifest lists no method"


@pytest.mark.parametrize("method, entry", ENTRIES, ids=[m for m, _ in ENTRIES])
def test_shipped_checkpoint_loads_strictly(method, entry):
    path = MODELS / entry["checkpoint"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], "the file is not the one the manifest names"
    assert path.stat().st_size <= SIZE_LIMIT
    config = load_config(REPO / entry["config"])
    assert config["model_params"]["method"] == method
    spec = methods.get(method)
    checkpoint = read_checkpoint(path)
    assert set(checkpoint) == set(spec.animation_networks), "weights only: exactly the animation networks"
    networks = {name: module for name, module in methods.build_networks(config["model_params"]).items()
                if name in spec.animation_networks}
    load_networks(checkpoint, networks, str(path), required=spec.animation_networks)   # strict: raises on any mismatch
    for name, module in networks.items():   # fp16 files load back to the fp32 networks value for value
        for key, value in module.state_dict().items():
            stored = checkpoint[name][key]
            assert value.dtype == torch.float32 or not value.is_floating_point()
            assert torch.equal(value, stored.to(value.dtype))


def test_every_registered_method_is_shipped_or_left_out_with_a_reason():
    listed = set(MANIFEST["methods"]) | set(MANIFEST.get("left_out", {}))
    assert set(methods.names()) <= listed, f"no demo model and no reason for {set(methods.names()) - listed}"
