"""HINet (Chen et al., CVPRW 2021): Half Instance Normalization Network.

A two-stage U-Net deraining network, re-written for dreamlib so that the
official Rain13k checkpoint (``HINet-Rain13k.pth``, BasicSR ``{'params': ...}``)
loads with ``strict=True``: every ``state_dict`` key and shape equals the one of
megvii-model/HINet ``basicsr/models/archs/hinet_arch.py``.

Topology (``wf`` base width, ``depth`` U-Net levels, level ``i`` has ``wf * 2**i``
channels and spatial size ``H / 2**i``)::

    image ─ conv_01 ─ down_path_1[0..depth-1] ─ up_path_1[0..depth-2] ─ sam12 ─┬─ out_1 (image)
                         │ (pre-downsample features "encs")      │ ("decs")       │ sam feature
                         │                                       │                │
    image ─ conv_02 ─ cat12([x2, sam feature]) ─ down_path_2 (+ csff_enc(encs), csff_dec(decs))
                                                 ─ up_path_2 ─ last ─ + image ─ out_2

The forward returns ``[out_1, out_2]`` exactly like the official module;
``out_2`` (the stage-2 residual prediction) is the final derained image.

Every down block whose level lies in ``[hin_position_left, hin_position_right]``
applies half instance normalisation: the first half of the channels after
``conv_1`` goes through ``InstanceNorm2d(affine=True)`` (no running statistics,
so there is nothing BatchNorm-like to match when dreaming), the other half is
left untouched.  Up blocks never use HIN.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "HINet",
    "CONFIGS",
    "build",
    "final_image",
    "PAD_MULTIPLE",
    "FEATURE_LAYER",
    "prunable_modules", "training_loss"]


class HINBlock(nn.Module):
    """Residual double-3x3 conv block with optional HIN, CSFF inputs and downsampling.

    Official counterpart: ``UNetConvBlock``.  Parameters (state_dict keys):

    - ``identity``: 1x1 conv ``in_size -> out_size`` (residual shortcut, with bias);
    - ``conv_1``, ``conv_2``: 3x3 convs with bias;
    - ``norm``: ``InstanceNorm2d(out_size // 2, affine=True)`` if ``use_hin``;
    - ``csff_enc``, ``csff_dec``: 3x3 convs with bias, only if ``use_csff and downsample``
      (cross-stage feature fusion: stage-2 encoder adds transformed stage-1 encoder
      and decoder features of the same level);
    - ``downsample``: 4x4 stride-2 conv without bias, only if ``downsample``.

    Shapes: ``x`` (B, in_size, H, W); ``enc``/``dec`` (B, out_size, H, W).
    Returns ``(down, full)`` = ((B, out_size, H/2, W/2), (B, out_size, H, W)) when
    downsampling, else the (B, out_size, H, W) tensor.
    """

    def __init__(self, in_size: int, out_size: int, downsample: bool, relu_slope: float,
                 use_csff: bool = False, use_hin: bool = False):
        super().__init__()
        # Attribute creation order mirrors the official module so that the
        # state_dict keys come out in the same order too (not required by
        # load_state_dict, but it keeps printed dicts comparable).
        self.identity = nn.Conv2d(in_size, out_size, 1, 1, 0)
        self.use_csff = bool(use_csff and downsample)
        self.conv_1 = nn.Conv2d(in_size, out_size, 3, padding=1, bias=True)
        self.relu_1 = nn.LeakyReLU(relu_slope, inplace=False)
        self.conv_2 = nn.Conv2d(out_size, out_size, 3, padding=1, bias=True)
        self.relu_2 = nn.LeakyReLU(relu_slope, inplace=False)
        if self.use_csff:
            self.csff_enc = nn.Conv2d(out_size, out_size, 3, 1, 1)
            self.csff_dec = nn.Conv2d(out_size, out_size, 3, 1, 1)
        self.use_hin = bool(use_hin)
        if self.use_hin:
            if out_size % 2:
                raise ValueError(f"half instance norm needs an even channel count, got {out_size}")
            self.norm = nn.InstanceNorm2d(out_size // 2, affine=True)
        # The official code keys the stride-2 conv as ``downsample`` (bias-free).
        self.downsample = nn.Conv2d(out_size, out_size, 4, 2, 1, bias=False) if downsample else None

    def forward(self, x, enc=None, dec=None):
        out = self.conv_1(x)
        if self.use_hin:
            # Normalise only the first half of the channels; the untouched half keeps
            # the contrast/colour information that plain IN would wash out.
            half_a, half_b = torch.chunk(out, 2, dim=1)
            out = torch.cat([self.norm(half_a), half_b], dim=1)
        out = self.relu_1(out)
        out = self.relu_2(self.conv_2(out))
        out = out + self.identity(x)
        if enc is not None and dec is not None:
            if not self.use_csff:
                raise RuntimeError("this block was built without cross-stage feature fusion")
            out = out + self.csff_enc(enc) + self.csff_dec(dec)
        if self.downsample is not None:
            return self.downsample(out), out
        return out


class HINUpBlock(nn.Module):
    """2x transposed-conv upsampling, concat with the skip feature, then a plain block.

    Official counterpart: ``UNetUpBlock``.  ``up``: ConvTranspose2d(in_size, out_size, 2, 2)
    with bias; ``conv_block``: :class:`HINBlock` (2*out_size == in_size -> out_size, no HIN).

    Shapes: ``x`` (B, in_size, H/2, W/2), ``bridge`` (B, out_size, H, W) -> (B, out_size, H, W).
    """

    def __init__(self, in_size: int, out_size: int, relu_slope: float):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_size, out_size, kernel_size=2, stride=2, bias=True)
        # After concatenation the block sees up (out_size) + bridge (out_size) = in_size channels.
        self.conv_block = HINBlock(in_size, out_size, False, relu_slope)

    def forward(self, x, bridge):
        return self.conv_block(torch.cat([self.up(x), bridge], dim=1))


class SupervisedAttention(nn.Module):
    """Supervised attention module between the two stages (official ``SAM``).

    ``conv1``: n_feat -> n_feat, ``conv2``: n_feat -> 3, ``conv3``: 3 -> n_feat, all 3x3 with bias.

    Shapes: ``x`` (B, n_feat, H, W), ``x_img`` (B, 3, H, W) ->
    (features (B, n_feat, H, W), stage-1 image (B, 3, H, W)).
    The stage-1 image is a residual prediction ``conv2(x) + x_img``; its sigmoid
    re-encoding gates ``conv1(x)`` so stage 2 receives image-supervised features.
    """

    def __init__(self, n_feat: int, kernel_size: int = 3, bias: bool = True):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(n_feat, n_feat, kernel_size, padding=pad, bias=bias)
        self.conv2 = nn.Conv2d(n_feat, 3, kernel_size, padding=pad, bias=bias)
        self.conv3 = nn.Conv2d(3, n_feat, kernel_size, padding=pad, bias=bias)

    def forward(self, x, x_img):
        img = self.conv2(x) + x_img
        gate = torch.sigmoid(self.conv3(img))
        return self.conv1(x) * gate + x, img


class HINet(nn.Module):
    """Two-stage HINet.

    Args:
        in_chn: image channels (3).
        wf: base width; level ``i`` has ``wf * 2**i`` channels.
        depth: number of U-Net levels (``depth - 1`` stride-2 downsamplings, so
            H and W must be multiples of ``2**(depth-1)``; see :data:`PAD_MULTIPLE`).
        relu_slope: LeakyReLU negative slope.
        hin_position_left, hin_position_right: encoder levels (inclusive) that use
            half instance normalisation, in both stages.

    Input (B, in_chn, H, W); returns ``[out_1, out_2]``, both (B, in_chn, H, W).
    """

    def __init__(self, in_chn: int = 3, wf: int = 64, depth: int = 5, relu_slope: float = 0.2,
                 hin_position_left: int = 0, hin_position_right: int = 4):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.depth = depth
        self.down_path_1 = nn.ModuleList()
        self.down_path_2 = nn.ModuleList()
        self.conv_01 = nn.Conv2d(in_chn, wf, 3, 1, 1)
        self.conv_02 = nn.Conv2d(in_chn, wf, 3, 1, 1)

        prev = wf
        for i in range(depth):
            width = wf * 2 ** i
            use_hin = hin_position_left <= i <= hin_position_right
            down = i + 1 < depth  # the bottom level does not downsample
            self.down_path_1.append(HINBlock(prev, width, down, relu_slope, use_hin=use_hin))
            # CSFF only exists where there is a stage-1 encoder/decoder feature of that level.
            self.down_path_2.append(HINBlock(prev, width, down, relu_slope, use_csff=down, use_hin=use_hin))
            prev = width

        self.up_path_1 = nn.ModuleList()
        self.up_path_2 = nn.ModuleList()
        self.skip_conv_1 = nn.ModuleList()
        self.skip_conv_2 = nn.ModuleList()
        for i in reversed(range(depth - 1)):
            width = wf * 2 ** i
            self.up_path_1.append(HINUpBlock(prev, width, relu_slope))
            self.up_path_2.append(HINUpBlock(prev, width, relu_slope))
            self.skip_conv_1.append(nn.Conv2d(width, width, 3, 1, 1))
            self.skip_conv_2.append(nn.Conv2d(width, width, 3, 1, 1))
            prev = width

        self.sam12 = SupervisedAttention(prev)
        # 1x1 fusion of stage-2 shallow features with the SAM output; its output is
        # the deep feature the paper uses (FEATURE_LAYER).
        self.cat12 = nn.Conv2d(prev * 2, prev, 1, 1, 0)
        self.last = nn.Conv2d(prev, in_chn, 3, 1, 1, bias=True)

    def forward(self, x):
        image = x

        # ---- stage 1: plain HIN U-Net -------------------------------------------------
        x1 = self.conv_01(image)
        encs = []  # full-resolution output of each downsampling level, finest first
        for block in self.down_path_1:
            if block.downsample is not None:
                x1, full = block(x1)
                encs.append(full)
            else:
                x1 = block(x1)
        decs = []  # decoder outputs, coarsest first
        for i, up in enumerate(self.up_path_1):
            x1 = up(x1, self.skip_conv_1[i](encs[-i - 1]))
            decs.append(x1)
        sam_feature, out_1 = self.sam12(x1, image)

        # ---- stage 2: U-Net fed with SAM features and stage-1 encoder/decoder (CSFF) ----
        x2 = self.cat12(torch.cat([self.conv_02(image), sam_feature], dim=1))
        blocks = []
        for i, block in enumerate(self.down_path_2):
            if block.downsample is not None:
                # decs[-i-1] is the stage-1 decoder output at the same resolution as level i.
                x2, full = block(x2, encs[i], decs[-i - 1])
                blocks.append(full)
            else:
                x2 = block(x2)
        for i, up in enumerate(self.up_path_2):
            x2 = up(x2, self.skip_conv_2[i](blocks[-i - 1]))

        out_2 = self.last(x2) + image
        return [out_1, out_2]


# --------------------------------------------------------------------------------------
# dreamlib model interface
# --------------------------------------------------------------------------------------

CONFIGS = {
    # options/train/Rain13k/HINet.yml of megvii-model/HINet -> 88,669,702 parameters.
    "official": dict(in_chn=3, wf=64, depth=5, relu_slope=0.2, hin_position_left=0, hin_position_right=4),
    # Same two-stage topology (HIN in every encoder level, SAM, CSFF) at 3 levels and
    # width 12: 192,726 parameters, 3.3 G MACs (nni) at 256x256, forward+backward of a
    # batch of 8 at 64x64 in ~0.27 s on one CPU core (wf=16 gives 0.34M but ~0.35 s).
    "small": dict(in_chn=3, wf=12, depth=3, relu_slope=0.2, hin_position_left=0, hin_position_right=2),
}


def build(**kwargs) -> HINet:
    return HINet(**kwargs)


def final_image(output) -> torch.Tensor:
    """``output`` is ``[out_1, out_2]``; the stage-2 image is the restored result."""
    return output[-1]


def PAD_MULTIPLE(model: HINet) -> int:  # noqa: N802 (interface name)
    """H and W must be divisible by 2**(depth-1): each of the depth-1 4x4/stride-2
    convs floors odd sizes, and the transposed convs would then not line up with
    the skip connections.  (Official: 16.)  Note that at exactly 16x16 the official
    bottom level is 1x1, where InstanceNorm refuses to run in training mode."""
    return 2 ** (model.depth - 1)


# Output of the stage-2 fusion conv (B, wf, H, W): 64 channels in the official config.
FEATURE_LAYER = "cat12"


def prunable_modules(model: HINet) -> list[str]:
    """Dotted module names in forward order, one per block of the network.

    Stage 1: ``conv_01``, ``down_path_1.i``, then for each decoder level the skip
    conv followed by its up block, ``sam12``.  Stage 2: ``conv_02``, ``cat12``,
    ``down_path_2.i`` (each containing its own ``csff_enc``/``csff_dec`` convs, so
    CSFF is pruned together with the encoder block it feeds), skip conv / up
    block pairs, ``last``.  The list is disjoint and covers every Conv2d and
    ConvTranspose2d of the model.
    """
    depth = model.depth
    names = ["conv_01"]
    names += [f"down_path_1.{i}" for i in range(depth)]
    for i in range(depth - 1):
        names += [f"skip_conv_1.{i}", f"up_path_1.{i}"]
    names += ["sam12", "conv_02", "cat12"]
    names += [f"down_path_2.{i}" for i in range(depth)]
    for i in range(depth - 1):
        names += [f"skip_conv_2.{i}", f"up_path_2.{i}"]
    names.append("last")
    return names


def training_loss(output, rainy, clean, px, aux_weight: float = 1.0):
    """Teacher training loss of a raw HINet output ``[stage1, stage2]``: ``px`` (a pixel loss) on
    the final image, plus ``aux_weight`` times the same on the first stage's image (as HINet does)."""
    total = px(output[-1], clean)
    if aux_weight:
        total = total + aux_weight * px(output[0], clean)
    return total
