"""MRAA's animation-via-disentanglement network: region parameters of the source (identity) and the
driving frame (pose) → region parameters with the source's shape and the driving's pose.

Two MLP encoders (identity, pose) and an MLP decoder over the flattened (shift, affine) of all
regions. With ``revert_axis_swap`` the identity affine is first multiplied by the sign of
(A_id · A_pose⁻¹)₀₀, undoing an SVD axis flip between the two frames. The covariance of the output
is A·Aᵀ.
"""
import torch
from torch import nn


def _mlp(sizes, inplace):
    layers = []
    for i, (cin, cout) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(cin, cout))
        if i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(cout), nn.ReLU(inplace=inplace)]
    return nn.Sequential(*layers)


def region_params_to_emb(x):
    """{'shift' (B, R, 2), 'affine' (B, R, 2, 2)} → (B, 6R), per region [shift, affine row-major]."""
    affine = x["affine"]
    emb = torch.cat([x["shift"], affine.view(affine.shape[0], affine.shape[1], -1)], dim=-1)
    return emb.view(emb.shape[0], -1)


def emb_to_region_params(emb, num_regions):
    """(B, 6R) → {'shift' (B, R, 2), 'affine' (B, R, 2, 2)}."""
    emb = emb.view(emb.shape[0], num_regions, 6)
    return {"shift": emb[:, :, :2], "affine": emb[:, :, 2:].view(emb.shape[0], num_regions, 2, 2)}


class AVDNetwork(nn.Module):
    """forward(x_id, x_pose) → {'shift' (B, R, 2), 'affine' (B, R, 2, 2), 'covar' (B, R, 2, 2)}."""

    def __init__(self, num_regions, id_bottle_size=64, pose_bottle_size=64, revert_axis_swap=True):
        super().__init__()
        input_size = (2 + 4) * num_regions
        self.num_regions = num_regions
        self.revert_axis_swap = revert_axis_swap
        # Layer indices (0 Linear, 1 BN, 2 ReLU, 3 Linear, ...) are the checkpoint's names.
        self.id_encoder = _mlp([input_size, 256, 512, 1024, id_bottle_size], inplace=True)
        self.pose_encoder = _mlp([input_size, 256, 512, 1024, pose_bottle_size], inplace=True)
        self.decoder = _mlp([pose_bottle_size + id_bottle_size, 1024, 512, 256, input_size], inplace=False)

    region_params_to_emb = staticmethod(region_params_to_emb)

    def emb_to_region_params(self, emb):
        return emb_to_region_params(emb, self.num_regions)

    def forward(self, x_id, x_pose, alpha=0.2):
        # ``alpha`` is unused, as in the original (kept for call compatibility).
        if self.revert_axis_swap:
            ratio = torch.matmul(x_id["affine"], torch.inverse(x_pose["affine"]))
            x_id = {"affine": x_id["affine"] * torch.sign(ratio[:, :, 0:1, 0:1]), "shift": x_id["shift"]}
        pose_emb = self.pose_encoder(region_params_to_emb(x_pose))
        id_emb = self.id_encoder(region_params_to_emb(x_id))
        rec = self.emb_to_region_params(self.decoder(torch.cat([pose_emb, id_emb], dim=1)))
        rec["covar"] = torch.matmul(rec["affine"], rec["affine"].permute(0, 1, 3, 2))
        return rec
