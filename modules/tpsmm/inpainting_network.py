"""TPSMM inpainting network: encode the source, warp every encoder level by the dense motion,
mask it by the matching occlusion map and decode (skip connections of the warped features).

Follows the original ``modules/inpainting_network.py`` (the generalised constructor of c616878:
decoder widths follow the encoder, so any ``block_expansion``/``max_features`` works). The forward
is split into :meth:`encode` (source only) and :meth:`decode` (per driving frame), so animation can
encode the target face once and decode batches of driving frames; ``forward = decode(encode(...))``.
Every resize of the flow and every ``grid_sample`` uses ``align_corners=True``, as the original.
"""
import torch
import torch.nn.functional as F
from torch import nn

from modules.tpsmm.util import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d


def _match_batch(tensor, batch):
    """Broadcast a batch-1 tensor (one source encoding) to ``batch`` driving frames (a view)."""
    if tensor.shape[0] == batch:
        return tensor
    if tensor.shape[0] != 1:
        raise ValueError(f"source batch {tensor.shape[0]} does not match the {batch} motion fields")
    return tensor.expand(batch, *tensor.shape[1:])


class InpaintingNetwork(nn.Module):
    """forward(source_image (B, C, H, W), dense_motion) → dict:

    - 'prediction' (B, C, H, W): the generated frame; 'deformed' (B, C, H, W): the warped source;
    - 'warped_encoder_maps': list of the warped, occluded encoder features, coarse to fine
      (detached copies: the warp-loss inputs);
    - 'contribution_maps', 'deformed_source', 'occlusion_map': passed through from ``dense_motion``.

    ``dense_motion``: the DenseMotionNetwork output ('deformation' (B, h, w, 2), 'occlusion_map' list,
    'contribution_maps', 'deformed_source'). Extra keywords (``common_params``) are ignored.
    """

    def __init__(self, num_channels, block_expansion, max_features, num_down_blocks, multi_mask=True,
                 num_cond_channels=0, **kwargs):
        super().__init__()
        self.num_down_blocks = num_down_blocks
        # FMEG-TPSRAU's AU branch: a (B, num_cond_channels) vector broadcast over the features and
        # concatenated before every decoder level (its resblocks and up block are that much wider).
        self.num_cond_channels = num_cond_channels
        self.multi_mask = multi_mask
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=(7, 7), padding=(3, 3))

        down_blocks, up_blocks, resblock = [], [], []
        for i in range(num_down_blocks):
            in_features = min(max_features, block_expansion * (2 ** i))
            out_features = min(max_features, block_expansion * (2 ** (i + 1)))
            down_blocks.append(DownBlock2d(in_features, out_features, kernel_size=(3, 3), padding=(1, 1)))
            # Every decoder level but the bottom one also receives the warped skip features.
            decoder_in_feature = out_features if i == num_down_blocks - 1 else out_features * 2
            decoder_in_feature += num_cond_channels
            up_blocks.append(UpBlock2d(decoder_in_feature, in_features, kernel_size=(3, 3), padding=(1, 1)))
            resblock.append(ResBlock2d(decoder_in_feature, kernel_size=(3, 3), padding=(1, 1)))
            resblock.append(ResBlock2d(decoder_in_feature, kernel_size=(3, 3), padding=(1, 1)))
        self.down_blocks = nn.ModuleList(down_blocks)
        self.up_blocks = nn.ModuleList(up_blocks[::-1])
        self.resblock = nn.ModuleList(resblock[::-1])

        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))
        self.num_channels = num_channels

    def deform_input(self, inp, deformation):
        """Sample inp (B, C, H, W) at deformation (B, h, w, 2), bilinearly resized to (H, W) first."""
        _, h_old, w_old, _ = deformation.shape
        _, _, h, w = inp.shape
        if h_old != h or w_old != w:
            deformation = deformation.permute(0, 3, 1, 2)
            deformation = F.interpolate(deformation, size=(h, w), mode="bilinear", align_corners=True)
            deformation = deformation.permute(0, 2, 3, 1)
        return F.grid_sample(inp, deformation, align_corners=True)

    def occlude_input(self, inp, occlusion_map):
        """inp · occlusion_map; a single mask (not multi_mask) is resized to inp's size first."""
        if not self.multi_mask and inp.shape[2:] != occlusion_map.shape[2:]:
            occlusion_map = F.interpolate(occlusion_map, size=inp.shape[2:], mode="bilinear", align_corners=True)
        return inp * occlusion_map

    def encode(self, source_image):
        """Encoder features of the source, fine to coarse: [first (B, be, H, W), down_1, ..., down_n]."""
        out = self.first(source_image)
        encoder_map = [out]
        for down_block in self.down_blocks:
            out = down_block(out)
            encoder_map.append(out)
        return encoder_map

    def decode(self, source_image, encoder_maps, dense_motion, au_cond=None):
        """The forward pass after the encoder. A batch-1 ``source_image``/``encoder_maps`` (one target
        face) is broadcast to the batch of ``dense_motion`` (B driving frames). ``au_cond`` (B,
        num_cond_channels): the AU branch's condition (required exactly when num_cond_channels > 0)."""
        if (au_cond is None) != (self.num_cond_channels == 0):
            raise ValueError(f"this inpainting network takes {self.num_cond_channels} AU condition channels; "
                             f"au_cond is {'missing' if au_cond is None else 'unexpected'}")
        deformation = dense_motion["deformation"]
        occlusion_map = dense_motion["occlusion_map"]
        batch = deformation.shape[0]
        source_image = _match_batch(source_image, batch)
        encoder_maps = [_match_batch(e, batch) for e in encoder_maps]

        output_dict = {"contribution_maps": dense_motion["contribution_maps"],
                       "deformed_source": dense_motion["deformed_source"],
                       "occlusion_map": occlusion_map}

        out = encoder_maps[-1]
        # The warp loss compares detached copies, so its gradient reaches only the dense motion.
        out_ij = self.occlude_input(self.deform_input(out.detach(), deformation), occlusion_map[0].detach())
        out = self.occlude_input(self.deform_input(out, deformation), occlusion_map[0])
        warped_encoder_maps = [out_ij]

        for i in range(self.num_down_blocks):
            if au_cond is not None:
                cond = au_cond.to(out.dtype)[:, :, None, None].expand(-1, -1, out.shape[2], out.shape[3])
                out = torch.cat([out, cond], 1)
            out = self.resblock[2 * i](out)
            out = self.resblock[2 * i + 1](out)
            out = self.up_blocks[i](out)

            encode_i = encoder_maps[-(i + 2)]
            occlusion_ind = i + 1 if self.multi_mask else 0
            encode_ij = self.occlude_input(self.deform_input(encode_i.detach(), deformation),
                                           occlusion_map[occlusion_ind].detach())
            encode_i = self.occlude_input(self.deform_input(encode_i, deformation), occlusion_map[occlusion_ind])
            warped_encoder_maps.append(encode_ij)
            if i == self.num_down_blocks - 1:
                break
            out = torch.cat([out, encode_i], 1)

        deformed_source = self.deform_input(source_image, deformation)
        output_dict["deformed"] = deformed_source
        output_dict["warped_encoder_maps"] = warped_encoder_maps

        occlusion_last = occlusion_map[-1]
        if not self.multi_mask:
            occlusion_last = F.interpolate(occlusion_last, size=out.shape[2:], mode="bilinear", align_corners=True)
        # The finest warped features are added back in the visible part; the inpainted rest fills holes.
        out = out * (1 - occlusion_last) + encode_i
        out = torch.sigmoid(self.final(out))
        output_dict["prediction"] = out * (1 - occlusion_last) + deformed_source * occlusion_last
        return output_dict

    def forward(self, source_image, dense_motion, au_cond=None):
        return self.decode(source_image, self.encode(source_image), dense_motion, au_cond)

    def get_encode(self, driver_image, occlusion_map):
        """Warp-loss targets: the driving frame's encoder features, each masked by the occlusion map
        of its resolution, fine to coarse, all detached. As the original, level i uses
        ``occlusion_map[2 − i]`` (written for 3 down blocks and 4 masks)."""
        out = self.first(driver_image)
        encoder_map = [self.occlude_input(out.detach(), occlusion_map[-1].detach())]
        for i in range(len(self.down_blocks)):
            out = self.down_blocks[i](out.detach())
            encoder_map.append(self.occlude_input(out.detach(), occlusion_map[2 - i].detach()).detach())
        return encoder_map
