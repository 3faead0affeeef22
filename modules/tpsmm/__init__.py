"""Thin-Plate Spline Motion Model (Zhao & Zhang, CVPR 2022), after yoyo-nb/Thin-Plate-Spline-Motion-Model
@ c616878: module, class and parameter names are the original's, so its checkpoints load strictly."""
from modules.tpsmm.avd_network import AVDNetwork
from modules.tpsmm.bg_motion_predictor import BGMotionPredictor
from modules.tpsmm.dense_motion import DenseMotionNetwork
from modules.tpsmm.inpainting_network import InpaintingNetwork
from modules.tpsmm.keypoint_detector import KPDetector
from modules.tpsmm.util import TPS

__all__ = ["AVDNetwork", "BGMotionPredictor", "DenseMotionNetwork", "InpaintingNetwork", "KPDetector", "TPS"]
