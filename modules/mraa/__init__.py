"""Motion Representations for Articulated Animation (Siarohin et al., CVPR 2021), after
snap-research/articulated-animation @ 03f1968: module, class, keyword and parameter names as there,
so its configs and checkpoints load strictly."""
from modules.mraa.animation import get_animation_region_params
from modules.mraa.avd_network import AVDNetwork
from modules.mraa.bg_motion_predictor import BGMotionPredictor
from modules.mraa.generator import Generator
from modules.mraa.pixelwise_flow_predictor import PixelwiseFlowPredictor
from modules.mraa.region_predictor import RegionPredictor

__all__ = ["AVDNetwork", "BGMotionPredictor", "Generator", "PixelwiseFlowPredictor", "RegionPredictor",
           "get_animation_region_params"]
