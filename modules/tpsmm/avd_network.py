"""TPSMM animation-via-disentanglement (AVD) network: an identity MLP on the source keypoints and a
pose MLP on the driving keypoints, decoded together into keypoints with the source's identity and
the driving pose. BatchNorm1d throughout (train-mode batches must hold more than one sample)."""
import torch
from torch import nn


def _mlp(sizes, inplace):
    layers = []
    for i in range(len(sizes) - 2):
        layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.BatchNorm1d(sizes[i + 1]), nn.ReLU(inplace=inplace)]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


class AVDNetwork(nn.Module):
    """forward(kp_source, kp_random) → {'fg_kp': (B, num_tps·5, 2)}.

    kp_source: {'fg_kp': (B, K·5, 2)} gives the identity; kp_random: {'fg_kp': (B, K·5, 2)} the pose.
    """

    def __init__(self, num_tps, id_bottle_size=64, pose_bottle_size=64, num_kps=5):
        super().__init__()
        input_size = num_kps * 2 * num_tps
        self.num_tps = num_tps
        self.num_kps = num_kps
        # Indices 0, 1, 3, 4, ... are checkpoint names (Linear, BatchNorm1d, ReLU triples).
        self.id_encoder = _mlp([input_size, 256, 512, 1024, id_bottle_size], inplace=True)
        self.pose_encoder = _mlp([input_size, 256, 512, 1024, pose_bottle_size], inplace=True)
        self.decoder = _mlp([pose_bottle_size + id_bottle_size, 1024, 512, 256, input_size], inplace=False)

    def forward(self, kp_source, kp_random):
        bs = kp_source["fg_kp"].shape[0]
        pose_emb = self.pose_encoder(kp_random["fg_kp"].reshape(bs, -1))
        id_emb = self.id_encoder(kp_source["fg_kp"].reshape(bs, -1))
        rec = self.decoder(torch.cat([pose_emb, id_emb], dim=1))
        return {"fg_kp": rec.view(bs, self.num_tps * self.num_kps, -1)}
