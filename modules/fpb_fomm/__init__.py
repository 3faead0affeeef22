"""FPB-FOMM (Facial Prior Guided ME generation, IEEE TIP 2024; sysu19351158/FPB-FOMM, ``FOMM_with_AWP``).

FP-FOMM with another keypoint detector: the 18 prior points become 18 per-point maps, which two learned
convolutions merge into the adaptive weighted prior (AWP) map fed to the hourglass. The generator,
dense-motion network and discriminator are the project's (:mod:`modules.generator`,
:mod:`modules.discriminator`), unchanged.
"""
from modules.fpb_fomm.keypoint_detector import KPDetector, detect_prior
from modules.fpb_fomm.prior_maps import PRIOR_MAP_SIGMA, prior_maps, scale_to_grid

__all__ = ["KPDetector", "detect_prior", "prior_maps", "scale_to_grid", "PRIOR_MAP_SIGMA"]
