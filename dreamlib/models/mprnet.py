"""MPRNet (Zamir et al., CVPR 2021), deraining configuration, official-compatible.

MPRNet restores an image in three stages that see progressively larger pieces
of it (a "multi-patch hierarchy"):

* **stage 1** cuts the (B,3,H,W) image into four (H/2,W/2) quadrants, encodes
  each with a 3-level U-Net encoder, stitches the encoder features back into a
  top and a bottom half and decodes each half;
* **stage 2** works on the two (H/2,W) halves, fuses the stage-1 features
  (cross-stage feature fusion, CSFF) into its own U-Net encoder, stitches the
  halves together and decodes the full image;
* **stage 3** never downsamples: an "original resolution subnetwork" (ORSNet)
  of three ORBs refines full-resolution features, receiving the stage-2 U-Net
  features upsampled to full size after each ORB.

Between stages a supervised attention module (SAM) predicts an intermediate
image and uses it to gate the features passed on. The forward returns
``[stage3_img + x, stage2_img, stage1_img]`` (finest first) exactly as the
official ``Deraining/MPRNet.py`` of swz30/MPRNet does, and the attribute names
reproduce the official ``state_dict()`` keys so ``model_deraining.pth`` loads
with ``strict=True``.

Official deraining hyper-parameters (they differ from the deblurring and
denoising releases): ``n_feat=40, scale_unetfeats=20, scale_orsnetfeats=16,
num_cab=8, kernel_size=3, reduction=4, bias=False`` -> 3,637,249 parameters,
140.98 G MACs at 1x3x256x256.

Two quirks of the official model that are kept on purpose:

* a single ``nn.PReLU()`` instance is shared by every CAB of the network. It is
  one parameter for ``parameters()`` but appears under every CAB's
  ``body.1.weight`` key in ``state_dict()``; building one PReLU per CAB would
  still load, but would silently untie the slope after fine-tuning.
* the last conv of every ORB and the 1x1 convs of the resizing modules never
  have a bias, whatever ``bias`` says.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["MPRNet", "CONFIGS", "build", "final_image", "PAD_MULTIPLE", "FEATURE_LAYER", "prunable_modules", "training_loss"]


def _conv(cin: int, cout: int, k: int, bias: bool = False) -> nn.Conv2d:
    """'Same' convolution (odd kernel, stride 1)."""
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


# --------------------------------------------------------------------------
# Attention building blocks
# --------------------------------------------------------------------------
class CALayer(nn.Module):
    """Squeeze-and-excitation channel attention: (B,C,H,W) -> (B,C,H,W).

    Global average pool -> 1x1 conv C->C/r -> ReLU -> 1x1 conv C/r->C -> sigmoid,
    then rescale the input channels.
    """

    def __init__(self, channel: int, reduction: int = 16, bias: bool = False):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        # indices 0 and 2 of this Sequential are the checkpoint's conv_du.{0,2}.weight
        self.conv_du = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, 1, bias=bias),
            nn.ReLU(inplace=True),
            nn.Conv2d(channel // reduction, channel, 1, bias=bias),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


class CAB(nn.Module):
    """Channel attention block: x + CA(conv(act(conv(x)))), shape preserved.

    ``act`` is passed in (not created here) because the official network shares
    one PReLU across all CABs.
    """

    def __init__(self, n_feat: int, kernel_size: int, reduction: int, bias: bool, act: nn.Module):
        super().__init__()
        # CA is registered before body so state_dict() lists keys in the official order.
        self.CA = CALayer(n_feat, reduction, bias=bias)
        self.body = nn.Sequential(
            _conv(n_feat, n_feat, kernel_size, bias=bias),
            act,
            _conv(n_feat, n_feat, kernel_size, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.CA(self.body(x))


class SAM(nn.Module):
    """Supervised attention module between two stages.

    Args of forward:
        x: (B,C,h,w) decoder features of the current stage.
        x_img: (B,3,h,w) the degraded input patch of the same region.
    Returns:
        feats: (B,C,h,w) features gated by the predicted image, plus x.
        img: (B,3,h,w) the stage's restored image (residual on x_img); this is
            what the loss supervises, hence "supervised" attention.
    """

    def __init__(self, n_feat: int, kernel_size: int, bias: bool):
        super().__init__()
        self.conv1 = _conv(n_feat, n_feat, kernel_size, bias=bias)
        self.conv2 = _conv(n_feat, 3, kernel_size, bias=bias)
        self.conv3 = _conv(3, n_feat, kernel_size, bias=bias)

    def forward(self, x: torch.Tensor, x_img: torch.Tensor):
        img = self.conv2(x) + x_img
        gate = torch.sigmoid(self.conv3(img))
        return self.conv1(x) * gate + x, img


# --------------------------------------------------------------------------
# Resizing (bilinear resample + 1x1 conv that changes the width)
# --------------------------------------------------------------------------
class DownSample(nn.Module):
    """(B,C,h,w) -> (B,C+s,h/2,w/2). Needs even h, w."""

    def __init__(self, in_channels: int, s_factor: int):
        super().__init__()
        self.down = nn.Sequential(
            nn.Upsample(scale_factor=0.5, mode="bilinear", align_corners=False),
            nn.Conv2d(in_channels, in_channels + s_factor, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(x)


class UpSample(nn.Module):
    """(B,C+s,h,w) -> (B,C,2h,2w)."""

    def __init__(self, in_channels: int, s_factor: int):
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(in_channels + s_factor, in_channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


class SkipUpSample(UpSample):
    """UpSample followed by the addition of a skip tensor: up(x) + skip."""

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.up(x) + skip


# --------------------------------------------------------------------------
# U-Net encoder / decoder used by stages 1 and 2
# --------------------------------------------------------------------------
def _cab_pair(ch: int, kernel_size: int, reduction: int, bias: bool, act: nn.Module) -> nn.Sequential:
    return nn.Sequential(*[CAB(ch, kernel_size, reduction, bias=bias, act=act) for _ in range(2)])


class Encoder(nn.Module):
    """3-level encoder, widths n, n+s, n+2s at scales 1, 1/2, 1/4.

    forward(x (B,n,h,w), encoder_outs=None, decoder_outs=None) ->
    [enc1 (B,n,h,w), enc2 (B,n+s,h/2,w/2), enc3 (B,n+2s,h/4,w/4)].

    With ``csff=True`` (stage 2) the previous stage's encoder and decoder
    features of each level are added in through 1x1 convs.
    """

    def __init__(self, n_feat, kernel_size, reduction, act, bias, scale_unetfeats, csff):
        super().__init__()
        widths = [n_feat + i * scale_unetfeats for i in range(3)]
        self.encoder_level1 = _cab_pair(widths[0], kernel_size, reduction, bias, act)
        self.encoder_level2 = _cab_pair(widths[1], kernel_size, reduction, bias, act)
        self.encoder_level3 = _cab_pair(widths[2], kernel_size, reduction, bias, act)
        self.down12 = DownSample(widths[0], scale_unetfeats)
        self.down23 = DownSample(widths[1], scale_unetfeats)
        self.csff = csff
        if csff:
            for i, ch in enumerate(widths, start=1):
                setattr(self, f"csff_enc{i}", nn.Conv2d(ch, ch, 1, bias=bias))
            for i, ch in enumerate(widths, start=1):
                setattr(self, f"csff_dec{i}", nn.Conv2d(ch, ch, 1, bias=bias))

    def _fuse(self, level: int, feat, encoder_outs, decoder_outs):
        # Like the official code, fusion happens only when both lists are given.
        if encoder_outs is None or decoder_outs is None:
            return feat
        i = level - 1
        enc_conv = getattr(self, f"csff_enc{level}")
        dec_conv = getattr(self, f"csff_dec{level}")
        return feat + enc_conv(encoder_outs[i]) + dec_conv(decoder_outs[i])

    def forward(self, x, encoder_outs=None, decoder_outs=None):
        enc1 = self._fuse(1, self.encoder_level1(x), encoder_outs, decoder_outs)
        enc2 = self._fuse(2, self.encoder_level2(self.down12(enc1)), encoder_outs, decoder_outs)
        enc3 = self._fuse(3, self.encoder_level3(self.down23(enc2)), encoder_outs, decoder_outs)
        return [enc1, enc2, enc3]


class Decoder(nn.Module):
    """3-level decoder mirroring :class:`Encoder`.

    forward([enc1, enc2, enc3]) -> [dec1 (B,n,h,w), dec2 (B,n+s,h/2,w/2), dec3 (B,n+2s,h/4,w/4)].
    Skip connections go through a CAB (``skip_attn*``) before being added.
    """

    def __init__(self, n_feat, kernel_size, reduction, act, bias, scale_unetfeats):
        super().__init__()
        widths = [n_feat + i * scale_unetfeats for i in range(3)]
        self.decoder_level1 = _cab_pair(widths[0], kernel_size, reduction, bias, act)
        self.decoder_level2 = _cab_pair(widths[1], kernel_size, reduction, bias, act)
        self.decoder_level3 = _cab_pair(widths[2], kernel_size, reduction, bias, act)
        self.skip_attn1 = CAB(widths[0], kernel_size, reduction, bias=bias, act=act)
        self.skip_attn2 = CAB(widths[1], kernel_size, reduction, bias=bias, act=act)
        self.up21 = SkipUpSample(widths[0], scale_unetfeats)
        self.up32 = SkipUpSample(widths[1], scale_unetfeats)

    def forward(self, outs):
        enc1, enc2, enc3 = outs
        dec3 = self.decoder_level3(enc3)
        dec2 = self.decoder_level2(self.up32(dec3, self.skip_attn2(enc2)))
        dec1 = self.decoder_level1(self.up21(dec2, self.skip_attn1(enc1)))
        return [dec1, dec2, dec3]


# --------------------------------------------------------------------------
# Stage 3: original-resolution subnetwork
# --------------------------------------------------------------------------
class ORB(nn.Module):
    """Original resolution block: x + conv(CAB^num_cab(x)), width kept."""

    def __init__(self, n_feat, kernel_size, reduction, act, bias, num_cab):
        super().__init__()
        blocks = [CAB(n_feat, kernel_size, reduction, bias=bias, act=act) for _ in range(num_cab)]
        # Official quirk: this closing conv is always bias-free (bias arg not forwarded).
        blocks.append(_conv(n_feat, n_feat, kernel_size, bias=False))
        self.body = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ORSNet(nn.Module):
    """Three ORBs at full resolution with width n+o (o = scale_orsnetfeats).

    forward(x (B,n+o,H,W), encoder_outs, decoder_outs) -> (B,n+o,H,W), where the
    lists are stage 2's U-Net features at scales 1, 1/2, 1/4. After ORB k the
    level-k encoder and decoder features are brought to full resolution
    (``up_enc*``/``up_dec*``, width back to n) and added through 1x1 convs n->n+o.
    """

    def __init__(self, n_feat, scale_orsnetfeats, kernel_size, reduction, act, bias, scale_unetfeats, num_cab):
        super().__init__()
        width = n_feat + scale_orsnetfeats
        self.orb1 = ORB(width, kernel_size, reduction, act, bias, num_cab)
        self.orb2 = ORB(width, kernel_size, reduction, act, bias, num_cab)
        self.orb3 = ORB(width, kernel_size, reduction, act, bias, num_cab)

        # level 2 (1/2 scale, width n+s) -> one x2 upsample to (n)
        self.up_enc1 = UpSample(n_feat, scale_unetfeats)
        self.up_dec1 = UpSample(n_feat, scale_unetfeats)
        # level 3 (1/4 scale, width n+2s) -> two x2 upsamples: n+2s -> n+s -> n
        self.up_enc2 = nn.Sequential(UpSample(n_feat + scale_unetfeats, scale_unetfeats),
                                     UpSample(n_feat, scale_unetfeats))
        self.up_dec2 = nn.Sequential(UpSample(n_feat + scale_unetfeats, scale_unetfeats),
                                     UpSample(n_feat, scale_unetfeats))

        for i in (1, 2, 3):
            setattr(self, f"conv_enc{i}", nn.Conv2d(n_feat, width, 1, bias=bias))
        for i in (1, 2, 3):
            setattr(self, f"conv_dec{i}", nn.Conv2d(n_feat, width, 1, bias=bias))

    def forward(self, x, encoder_outs, decoder_outs):
        x = self.orb1(x)
        x = x + self.conv_enc1(encoder_outs[0]) + self.conv_dec1(decoder_outs[0])
        x = self.orb2(x)
        x = x + self.conv_enc2(self.up_enc1(encoder_outs[1])) + self.conv_dec2(self.up_dec1(decoder_outs[1]))
        x = self.orb3(x)
        x = x + self.conv_enc3(self.up_enc2(encoder_outs[2])) + self.conv_dec3(self.up_dec2(decoder_outs[2]))
        return x


# --------------------------------------------------------------------------
# Full network
# --------------------------------------------------------------------------
class MPRNet(nn.Module):
    """Multi-stage progressive restoration network.

    Input (B, in_c, H, W) with H and W multiples of 8 (see :data:`PAD_MULTIPLE`).
    Output ``[final (B,out_c,H,W), stage2 (B,3,H,W), stage1 (B,3,H,W)]``.
    """

    def __init__(self, in_c: int = 3, out_c: int = 3, n_feat: int = 40, scale_unetfeats: int = 20,
                 scale_orsnetfeats: int = 16, num_cab: int = 8, kernel_size: int = 3, reduction: int = 4,
                 bias: bool = False):
        super().__init__()
        if n_feat // reduction < 1:
            raise ValueError(f"n_feat={n_feat} too small for reduction={reduction} (channel attention needs >= 1 channel)")
        act = nn.PReLU()  # one slope shared by every CAB, as in the official model

        def shallow():
            return nn.Sequential(_conv(in_c, n_feat, kernel_size, bias=bias),
                                 CAB(n_feat, kernel_size, reduction, bias=bias, act=act))

        self.shallow_feat1 = shallow()
        self.shallow_feat2 = shallow()
        self.shallow_feat3 = shallow()

        unet = (n_feat, kernel_size, reduction, act, bias, scale_unetfeats)
        self.stage1_encoder = Encoder(*unet, csff=False)
        self.stage1_decoder = Decoder(*unet)
        self.stage2_encoder = Encoder(*unet, csff=True)
        self.stage2_decoder = Decoder(*unet)
        self.stage3_orsnet = ORSNet(n_feat, scale_orsnetfeats, kernel_size, reduction, act, bias,
                                    scale_unetfeats, num_cab)

        # SAMs use 1x1 convs in the official model, whatever kernel_size is.
        self.sam12 = SAM(n_feat, kernel_size=1, bias=bias)
        self.sam23 = SAM(n_feat, kernel_size=1, bias=bias)

        self.concat12 = _conv(2 * n_feat, n_feat, kernel_size, bias=bias)
        self.concat23 = _conv(2 * n_feat, n_feat + scale_orsnetfeats, kernel_size, bias=bias)
        self.tail = _conv(n_feat + scale_orsnetfeats, out_c, kernel_size, bias=bias)

    @staticmethod
    def _cat_lists(a, b, dim):
        """Concatenate two per-level feature lists level by level along ``dim``."""
        return [torch.cat((u, v), dim) for u, v in zip(a, b)]

    def forward(self, x: torch.Tensor):
        h, w = x.shape[-2:]
        hh, hw = h // 2, w // 2
        halves = [x[:, :, :hh, :], x[:, :, hh:, :]]  # stage-2 inputs: top, bottom

        # ---- stage 1: four quadrants, stitched back to halves at every U-Net level
        stage1_feats, stage1_dec, sam_feats, stage1_imgs = [], [], [], []
        for half in halves:
            left = self.stage1_encoder(self.shallow_feat1(half[..., :hw]))
            right = self.stage1_encoder(self.shallow_feat1(half[..., hw:]))
            feats = self._cat_lists(left, right, dim=3)  # width-wise -> one half
            dec = self.stage1_decoder(feats)
            f, img = self.sam12(dec[0], half)
            stage1_feats.append(feats)
            stage1_dec.append(dec)
            sam_feats.append(f)
            stage1_imgs.append(img)
        stage1_img = torch.cat(stage1_imgs, 2)

        # ---- stage 2: two halves, with CSFF from stage 1, stitched height-wise
        stage2_feats = []
        for half, f, feats, dec in zip(halves, sam_feats, stage1_feats, stage1_dec):
            z = self.concat12(torch.cat([self.shallow_feat2(half), f], 1))
            stage2_feats.append(self.stage2_encoder(z, feats, dec))
        feat2 = self._cat_lists(stage2_feats[0], stage2_feats[1], dim=2)
        res2 = self.stage2_decoder(feat2)
        x3_samfeats, stage2_img = self.sam23(res2[0], x)

        # ---- stage 3: full resolution, fed with stage 2's U-Net features
        z = self.concat23(torch.cat([self.shallow_feat3(x), x3_samfeats], 1))
        z = self.stage3_orsnet(z, feat2, res2)
        stage3_img = self.tail(z)
        return [stage3_img + x, stage2_img, stage1_img]


# --------------------------------------------------------------------------
# dreamlib interface
# --------------------------------------------------------------------------
CONFIGS = {
    # Deraining/MPRNet.py defaults = the model_deraining.pth checkpoint
    "official": dict(in_c=3, out_c=3, n_feat=40, scale_unetfeats=20, scale_orsnetfeats=16,
                     num_cab=8, kernel_size=3, reduction=4, bias=False),
    # Same topology at CPU-trainable width/depth: U-Net widths 8/16/24, ORSNet
    # width 16 with 2 CABs per ORB; ~0.19 M params, 4.8 G MACs at 256x256.
    # Width is cheap to cut but depth is not: with ~300 small ops, per-op overhead
    # dominates a 64x64 batch on one core (fwd+bwd of 8 crops ~0.4 s).
    "small": dict(in_c=3, out_c=3, n_feat=8, scale_unetfeats=8, scale_orsnetfeats=8,
                  num_cab=2, kernel_size=3, reduction=4, bias=False),
}


def build(**kwargs) -> MPRNet:
    return MPRNet(**kwargs)


def final_image(output) -> torch.Tensor:
    """The stage-3 image (index 0 of the official return list)."""
    return output[0]


#: Stage 1 works on H/2 x W/2 quadrants, each going through two bilinear x0.5
#: downsamplings (3-level U-Net) whose outputs are upsampled x2 and added back
#: to the skips, so each quadrant side must be a multiple of 4 -> H, W multiples
#: of 8. (The official Deraining/test.py does not pad: it only runs images whose sides are
#: multiples of 8; only the root demo.py reflect-pads to 8, as ``restore`` does. See
#: :mod:`dreamlib.protocols`.)
PAD_MULTIPLE = 8

#: The paper's "penultimate layer with 56 channels": the ORSNet output, i.e.
#: the (B, n_feat + scale_orsnetfeats, H, W) feature map fed to ``tail``.
FEATURE_LAYER = "stage3_orsnet"


def prunable_modules(model: nn.Module) -> list[str]:
    """Modules at Fig.-4 granularity, in forward order.

    Left out: ORSNet's cross-scale fusion convs (``stage3_orsnet.up_enc*``,
    ``up_dec*``, ``conv_enc*``, ``conv_dec*``: 1x1 convs, ~1.2 % of the official
    MACs, with no enclosing module of their own short of the whole ORSNet,
    which would overlap the ORBs). Every other conv is covered.
    """
    names = [
        "shallow_feat1", "stage1_encoder", "stage1_decoder", "sam12",
        "shallow_feat2", "concat12", "stage2_encoder", "stage2_decoder", "sam23",
        "shallow_feat3", "concat23",
        "stage3_orsnet.orb1", "stage3_orsnet.orb2", "stage3_orsnet.orb3",
        "tail",
    ]
    present = dict(model.named_modules())
    return [n for n in names if n in present]


def training_loss(output, rainy, clean, px, aux_weight: float = 1.0):
    """Teacher training loss of a raw MPRNet output ``[stage3, stage2, stage1]``: ``px`` on the final
    image, plus ``aux_weight`` times the sum over the two earlier stages' images (as MPRNet does)."""
    total = px(output[0], clean)
    if aux_weight:
        total = total + aux_weight * sum(px(o, clean) for o in output[1:])
    return total
