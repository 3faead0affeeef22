"""VGG19 features for the perceptual loss, and the image pyramid it is applied on.

Weight policy: ImageNet weights from ``vgg_weights`` (a path) or from torchvision's cache;
where neither exists, a fixed random VGG19 (seeded, so runs stay comparable) with a loud warning —
a known, weaker perceptual loss, never a silent one.
"""
import logging
import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from modules.blocks import AntiAliasInterpolation2d, scale_key

log = logging.getLogger(__name__)

# torchvision's file name for the ImageNet VGG19 weights (torchvision.models.VGG19_Weights.IMAGENET1K_V1).
TORCHVISION_VGG19_FILE = "vgg19-dcbb9e9d.pth"
# Layers of torchvision's vgg19().features: 3×3 conv widths, 'M' = max pool. The feature indices
# below follow torchvision's numbering so its state dict ('features.N.weight') loads directly.
_VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
# Outputs: relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (indices into features).
_VGG19_TAPS = (1, 6, 11, 20, 29)
RANDOM_VGG_SEED = 20210601


class VGGWeightsMissing(UserWarning):
    """Pretrained VGG19 weights were not found; the perceptual loss uses a fixed random VGG19."""


def _vgg19_features():
    layers, channels = [], 3
    for spec in _VGG19_LAYOUT:
        if spec == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, spec, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            channels = spec
    return nn.Sequential(*layers[: _VGG19_TAPS[-1] + 1])


def cached_vgg19_path():
    """torchvision's cache location of the ImageNet VGG19 weights (may not exist)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", TORCHVISION_VGG19_FILE)


class Vgg19(nn.Module):
    """Frozen VGG19 up to relu5_1. forward((B, 3, H, W) in [0, 1]) → 5 feature maps.

    ``weights``: a path to torchvision's vgg19 state dict, or None to look in torchvision's cache.
    ``source`` tells afterwards which weights were used ('imagenet:<path>' or 'random').
    """

    def __init__(self, weights=None, allow_random=True):
        super().__init__()
        self.features = _vgg19_features()
        path = weights or cached_vgg19_path()
        if os.path.isfile(path):
            state = torch.load(path, map_location="cpu", weights_only=True)
            features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
            wanted = self.features.state_dict().keys()
            self.features.load_state_dict({k: features[k] for k in wanted})
            self.source = f"imagenet:{path}"
        elif weights is not None or not allow_random:
            raise FileNotFoundError(f"VGG19 weights {path} not found: fix train_params.vgg_weights "
                                    f"or put torchvision's {TORCHVISION_VGG19_FILE} there")
        else:
            generator = torch.Generator().manual_seed(RANDOM_VGG_SEED)
            for module in self.features:
                if isinstance(module, nn.Conv2d):
                    # torchvision's VGG initialisation, but from a fixed seed.
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu", generator=generator)
                    nn.init.zeros_(module.bias)
            self.source = "random"
            warnings.warn(
                f"No pretrained VGG19 weights (looked for {path}). The perceptual loss uses a FIXED RANDOM "
                "VGG19, which trains worse than ImageNet features. Put torchvision's "
                f"{TORCHVISION_VGG19_FILE} in {os.path.dirname(path)} or set train_params.vgg_weights.",
                VGGWeightsMissing, stacklevel=2)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode=True):
        # Always an instrument, never trained: stays in eval mode whatever its owner does.
        return super().train(False)

    def forward(self, x):
        out = (x - self.mean) / self.std
        taps = []
        for index, layer in enumerate(self.features):
            out = layer(out)
            if index in _VGG19_TAPS:
                taps.append(out)
        return taps


class ImagePyramid(nn.Module):
    """Anti-aliased pyramid. (B, C, H, W) → {'prediction_<scale>': (B, C, H·s, W·s)} for each scale.

    Uses the separable blur: the pyramid of the generated frame is differentiated every training
    step, and the depthwise convolution's backward pass is slow on the CPU (same values up to rounding).
    """

    def __init__(self, scales, num_channels):
        super().__init__()
        self.downs = nn.ModuleDict({scale_key(s): AntiAliasInterpolation2d(num_channels, s, separable=True)
                                    for s in scales})

    def forward(self, x):
        return {"prediction_" + key.replace("-", "."): down(x) for key, down in self.downs.items()}


ImagePyramide = ImagePyramid  # the published class name
