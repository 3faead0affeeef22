"""FPB-FOMM (``fpb-fomm``) as a method of the registry: FP-FOMM with the adaptive weighted prior.

What differs from FP-FOMM (modules/method.py), and nothing else does: the keypoint detector
(modules/fpb_fomm/keypoint_detector.py: 18 Euclidean prior maps → learned Conv 18→9→1 as the
hourglass's extra channel), and keypoint values from the prior of **each** frame. The original ran
dlib inside the detector's forward on every image; here the priors are kpmaker's per-frame
landmarks (``dataset_params.prior_mode`` defaults to ``per_frame`` for this method), and the
equivariance-warped frame gets the prior mapped under the warp (``prior_equivariance: corrected``),
so it never loses the face. Where dlib found no face in a frame, kpmaker's fallback template stands
in, as the original's ``kp.pt`` did.
"""
from configuration import SCHEMA, Field, Section
from modules.method import FommFamily, fomm_networks

DATASET_PARAMS = Section({**SCHEMA["dataset_params"],
                          "prior_mode": Field(str, "per_frame", choices=("first_frame", "per_frame"))})


class FpbFomm(FommFamily):
    sections = {**FommFamily.sections, "dataset_params": DATASET_PARAMS}

    def build_networks(self, model_params):
        from modules.fpb_fomm.keypoint_detector import KPDetector

        networks = fomm_networks(model_params)
        networks["kp_detector"] = KPDetector(**model_params["kp_detector_params"],
                                             **model_params["common_params"])
        return networks


FPB_FOMM = FpbFomm("fpb-fomm", "prior")
