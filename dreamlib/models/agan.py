"""AGAN generator (Qian et al., "Attentive Generative Adversarial Network for
Raindrop Removal from a Single Image", CVPR 2018), official-compatible.

The generator has two parts that run one after the other:

1. **Attentive-recurrent network.** ``iterations`` (4 in the paper) times, the
   rainy image concatenated with the current attention map (a 4-channel tensor)
   goes through a stem conv (``det_conv0``) and ``det_blocks`` residual blocks
   of two 3x3 convs (``det_conv1`` ...), then a convolutional LSTM whose four
   gates (``conv_i``, ``conv_f``, ``conv_g``, ``conv_o``) read the features
   concatenated with the previous hidden state, and a 3x3 conv
   (``det_conv_mask``) turns the hidden state into the next attention map. The
   same weights are used at every step, so each of these modules runs
   ``iterations`` times per forward (FLOPs counters must sum every call).
2. **Contextual autoencoder.** The image concatenated with the *last* attention
   map is encoded to 1/4 resolution (``conv1`` ... ``conv6``), passes four
   dilated convs (``diconv1`` ... ``diconv4``, dilation 2/4/8/16) and
   ``conv7``/``conv8``, and is decoded with two transposed convs (``deconv1``,
   ``deconv2``) that receive U-Net style additive skips. Side outputs at 1/4
   (``outframe1``) and 1/2 (``outframe2``) resolution were supervised by the
   multi-scale loss during training.

The forward keeps the official return structure
``(mask_list, frame1, frame2, x)`` where ``x`` is the derained image at full
resolution (not a residual); :func:`final_image` picks it.

Differences from the original code, none of which changes a state_dict key or
a number: the attention map and LSTM state are created on the input's device
and dtype (the original hard-codes ``.cuda()``), widths/depths are constructor
arguments (defaults = the published checkpoint ``weights/gen.pkl``, 6,244,362
parameters).

Notes for users of the official checkpoint:

* The official scripts read images with OpenCV, so the published weights
  expect **BGR** channel order in [0, 1] (``INPUT_CHANNEL_ORDER``);
  ``dreamlib.models.restore`` flips RGB input and output for the official
  variant, so callers always pass RGB.
* Height and width must be multiples of 4 (two stride-2 convs, then additive
  skips at 1/2 and full resolution); :data:`PAD_MULTIPLE` tells
  ``dreamlib.models.restore`` to reflect-pad accordingly.
* The attention maps are raw conv outputs (no sigmoid), exactly as in the
  original.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AttentiveGenerator",
    "CONFIGS",
    "build",
    "final_image",
    "PAD_MULTIPLE",
    "FEATURE_LAYER",
    "prunable_modules",
    "INPUT_CHANNEL_ORDER", "training_loss", "identity_init_"]

#: Channel order the released ``gen.pkl`` was trained on (OpenCV images).
INPUT_CHANNEL_ORDER = "BGR"


# --------------------------------------------------------------------------- #
# building blocks (each returns an nn.Sequential so the state_dict keys are
# ``<name>.<index>.weight`` like the original's Sequentials)
# --------------------------------------------------------------------------- #
def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """k x k conv with 'same' padding for stride 1 (pad = dilation * (k-1)/2)."""
    return nn.Conv2d(cin, cout, k, stride, dilation * (k - 1) // 2, dilation=dilation)


def _conv_act(cin: int, cout: int, act: nn.Module, k: int = 3, stride: int = 1,
              dilation: int = 1) -> nn.Sequential:
    """[conv, act]: keys ``0.weight``, ``0.bias``."""
    return nn.Sequential(_conv(cin, cout, k, stride, dilation), act)


def _double_conv(ch: int) -> nn.Sequential:
    """[conv3x3, ReLU, conv3x3, ReLU], the body of one residual block of the
    attentive-recurrent network (the skip is added in the forward):
    keys ``0.*`` and ``2.*``."""
    return nn.Sequential(_conv(ch, ch), nn.ReLU(), _conv(ch, ch), nn.ReLU())


def _upsample(cin: int, cout: int) -> nn.Sequential:
    """x2 upsampling: (B,cin,H,W) -> (B,cout,2H,2W).

    ConvTranspose2d(k4, s2, p1) gives exactly 2H x 2W; the original then
    reflect-pads one row/column on the top/left and averages 2x2 windows with
    stride 1 (a cheap anti-checkerboard blur that keeps the size), then ReLU.
    Only index 0 carries weights.
    """
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 4, 2, 1),
        nn.ReflectionPad2d((1, 0, 1, 0)),
        nn.AvgPool2d(2, stride=1),
        nn.ReLU(),
    )


class AttentiveGenerator(nn.Module):
    """Generator of AGAN (``Generator`` in rui1996/DeRaindrop), configurable.

    Args:
        det_width: channels of the attentive-recurrent network and of the
            LSTM state (official 32).
        det_blocks: number of residual blocks ``det_conv1..det_conv{N}``
            after the stem ``det_conv0`` (official 5).
        iterations: recurrent attention steps (official ``ITERATION = 4``).
        widths: autoencoder channels at full, 1/2 and 1/4 resolution
            (official (64, 128, 256)).
        tail_width: channels of ``conv10``, the last hidden layer at full
            resolution (official 32).
        dilations: dilation of each ``diconv{k}`` (official (2, 4, 8, 16)).

    Input: (B, 3, H, W) image in [0, 1] (BGR for the official weights), H and W
    multiples of 4.
    Output: ``(mask_list, frame1, frame2, x)`` with
        mask_list: list of ``iterations`` tensors (B, 1, H, W) (attention maps),
        frame1: (B, 3, H/4, W/4), frame2: (B, 3, H/2, W/2),
        x: (B, 3, H, W), the derained image.
    """

    def __init__(
        self,
        det_width: int = 32,
        det_blocks: int = 5,
        iterations: int = 4,
        widths: Sequence[int] = (64, 128, 256),
        tail_width: int = 32,
        dilations: Sequence[int] = (2, 4, 8, 16),
    ) -> None:
        super().__init__()
        if iterations < 1:
            raise ValueError("iterations must be >= 1 (the autoencoder reads the last attention map)")
        if len(widths) != 3:
            raise ValueError("widths must give the channels at full, 1/2 and 1/4 resolution")
        w1, w2, w3 = (int(c) for c in widths)
        d = int(det_width)
        self.det_width = d
        self.det_blocks = int(det_blocks)
        self.iterations = int(iterations)
        self.n_dilated = len(dilations)

        # ---- attentive-recurrent network (runs `iterations` times) --------
        # 4 input channels: image (3) + attention map (1).
        self.det_conv0 = _conv_act(4, d, nn.ReLU())
        for k in range(1, self.det_blocks + 1):
            setattr(self, f"det_conv{k}", _double_conv(d))
        # Conv-LSTM gates; each reads cat(features, h) = 2d channels.
        self.conv_i = _conv_act(2 * d, d, nn.Sigmoid())
        self.conv_f = _conv_act(2 * d, d, nn.Sigmoid())
        self.conv_g = _conv_act(2 * d, d, nn.Tanh())
        self.conv_o = _conv_act(2 * d, d, nn.Sigmoid())
        # Hidden state -> attention map (linear, no activation in the original).
        self.det_conv_mask = nn.Sequential(_conv(d, 1))

        # ---- contextual autoencoder (runs once) ----------------------------
        self.conv1 = _conv_act(4, w1, nn.ReLU(), k=5)            # full res
        self.conv2 = _conv_act(w1, w2, nn.ReLU(), stride=2)      # -> 1/2
        self.conv3 = _conv_act(w2, w2, nn.ReLU())
        self.conv4 = _conv_act(w2, w3, nn.ReLU(), stride=2)      # -> 1/4
        self.conv5 = _conv_act(w3, w3, nn.ReLU())
        self.conv6 = _conv_act(w3, w3, nn.ReLU())
        for k, dil in enumerate(dilations, start=1):
            setattr(self, f"diconv{k}", _conv_act(w3, w3, nn.ReLU(), dilation=int(dil)))
        self.conv7 = _conv_act(w3, w3, nn.ReLU())
        self.conv8 = _conv_act(w3, w3, nn.ReLU())
        self.deconv1 = _upsample(w3, w2)                         # -> 1/2
        self.conv9 = _conv_act(w2, w2, nn.ReLU())
        self.deconv2 = _upsample(w2, w1)                         # -> full
        self.conv10 = _conv_act(w1, tail_width, nn.ReLU())
        # Side outputs (ReLU-ed in the original) and the final image (linear).
        self.outframe1 = _conv_act(w3, 3, nn.ReLU())
        self.outframe2 = _conv_act(w2, 3, nn.ReLU())
        self.output = nn.Sequential(_conv(tail_width, 3))

    # ------------------------------------------------------------------ #
    def attention(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Run the recurrent attention: (B,3,H,W) -> list of (B,1,H,W) maps."""
        b, _, h, w = image.shape
        # Initial attention 0.5 everywhere, LSTM state zero; created on the
        # input's device/dtype so the model runs anywhere (and under autocast).
        mask = image.new_full((b, 1, h, w), 0.5)
        hidden = image.new_zeros((b, self.det_width, h, w))
        cell = image.new_zeros((b, self.det_width, h, w))
        masks: list[torch.Tensor] = []
        for _ in range(self.iterations):
            feat = self.det_conv0(torch.cat((image, mask), dim=1))
            for k in range(1, self.det_blocks + 1):
                # residual block with a ReLU after the addition
                feat = F.relu(getattr(self, f"det_conv{k}")(feat) + feat)
            z = torch.cat((feat, hidden), dim=1)
            gate_i, gate_f = self.conv_i(z), self.conv_f(z)
            cand, gate_o = self.conv_g(z), self.conv_o(z)
            cell = gate_f * cell + gate_i * cand
            hidden = gate_o * torch.tanh(cell)
            mask = self.det_conv_mask(hidden)
            masks.append(mask)
        return masks

    def forward(self, image: torch.Tensor):
        """(B,3,H,W) -> (mask_list, frame1 (1/4), frame2 (1/2), image (full))."""
        masks = self.attention(image)

        x = self.conv1(torch.cat((image, masks[-1]), dim=1))
        skip_full = x                                   # (B, w1, H, W)
        x = self.conv3(self.conv2(x))
        skip_half = x                                   # (B, w2, H/2, W/2)
        x = self.conv6(self.conv5(self.conv4(x)))       # (B, w3, H/4, W/4)
        for k in range(1, self.n_dilated + 1):
            x = getattr(self, f"diconv{k}")(x)
        x = self.conv8(self.conv7(x))
        frame1 = self.outframe1(x)                      # (B, 3, H/4, W/4)

        x = self.conv9(self.deconv1(x) + skip_half)
        frame2 = self.outframe2(x)                      # (B, 3, H/2, W/2)

        x = self.conv10(self.deconv2(x) + skip_full)
        x = self.output(x)                              # (B, 3, H, W)
        return masks, frame1, frame2, x


# --------------------------------------------------------------------------- #
# dreamlib model interface
# --------------------------------------------------------------------------- #
CONFIGS = {
    # weights/gen.pkl of rui1996/DeRaindrop (Generator() with ITERATION = 4)
    "official": dict(det_width=32, det_blocks=5, iterations=4, widths=(64, 128, 256),
                     tail_width=32, dilations=(2, 4, 8, 16)),
    # Same topology (every named module present, 4 dilated convs, all skips),
    # narrower, fewer residual blocks and 2 recurrent steps so that it trains
    # on a CPU. The attentive-recurrent part runs at full resolution and
    # dominates the cost, hence its small width.
    "small": dict(det_width=8, det_blocks=2, iterations=2, widths=(16, 32, 64),
                  tail_width=16, dilations=(2, 4, 8, 16)),
}


def build(**kwargs) -> AttentiveGenerator:
    return AttentiveGenerator(**kwargs)


def final_image(output) -> torch.Tensor:
    """The derained image: the last element of ``(mask_list, frame1, frame2, x)``."""
    if isinstance(output, torch.Tensor):
        return output
    return output[-1]


# Two stride-2 convs followed by additive skips at 1/2 and full resolution:
# H and W must be divisible by 4 (the official scripts crop to a multiple of 4).
PAD_MULTIPLE = 4

# conv8: the last conv of the 1/4-resolution bottleneck, after the dilated
# stack (largest receptive field, widest layer: 256 channels officially, post
# ReLU). Its output is shared by the 1/4-scale side output and the decoder, so
# it is the deepest representation every output depends on. It runs once per
# forward (unlike the recurrent modules), so a forward hook sees one tensor.
FEATURE_LAYER = "conv8"


def prunable_modules(model: nn.Module) -> list[str]:
    """Top-level blocks in forward order, each holding conv weights.

    Attentive-recurrent part: det_conv0, det_conv1..N (residual blocks),
    conv_i/f/g/o (LSTM gates), det_conv_mask; autoencoder: conv1..conv6,
    diconv1..M, conv7, conv8, outframe1, deconv1, conv9, outframe2, deconv2,
    conv10, output. Together they cover every conv of the network.
    """
    n_blocks = getattr(model, "det_blocks", 5)
    n_dil = getattr(model, "n_dilated", 4)
    names = ["det_conv0"] + [f"det_conv{k}" for k in range(1, n_blocks + 1)]
    names += ["conv_i", "conv_f", "conv_g", "conv_o", "det_conv_mask"]
    names += ["conv1", "conv2", "conv3", "conv4", "conv5", "conv6"]
    names += [f"diconv{k}" for k in range(1, n_dil + 1)]
    names += ["conv7", "conv8", "outframe1", "deconv1", "conv9", "outframe2",
              "deconv2", "conv10", "output"]
    return names


# ----------------------------------------------------------------------------- training

_LIVE_BIAS = 0.1  # keeps deconv2's identity channels on the live side of their ReLU


@torch.no_grad()
def identity_init_(model: nn.Module) -> nn.Module:
    """Start AGAN's generator as the exact identity map (in place; keys and shapes untouched).

    AGAN's output is not residual, so with the default initialisation the first
    hundreds of steps are spent learning to copy the input (a 600-step pilot still
    scored below the rainy input). Here ``conv1`` copies the image into its first
    3 channels (ReLU keeps [0, 1] values), ``deconv2`` adds only a constant to
    them (see below), ``conv10`` copies them on and ``output`` reads only them;
    every other weight keeps the initialisation it had (PyTorch's default,
    :func:`dreamlib.models.init.kaiming_init_` or :func:`dreamlib.models.init.dirac_init_`), so the network starts at
    "output = input" and learns the correction, like the residual networks. The
    ``output`` weights of the other channels start at zero (they receive
    gradients from step one).

    ``deconv2``'s channels 0-2 start with zero weights but a bias of
    ``_LIVE_BIAS`` (and ``output`` subtracts it again, so the start is still the
    exact identity): with a zero bias their pre-activation would be exactly 0,
    the ReLU after ``deconv2`` would pass no gradient, and those 3 channels would
    stay dead for the whole training (a sparsity-aware MAC count then reports
    fewer MACs for the trained model than for a fresh build).
    """
    from ..spec import spec_of

    spec = spec_of(model, infer=False)
    name = None if spec is None else spec.name
    if name != "agan":
        raise ValueError(f"identity_init_ is for AGAN (non-residual output); got {name!r}")
    c1, d2, c10, out = model.conv1[0], model.deconv2[0], model.conv10[0], model.output[0]
    if c1.out_channels < 3 or c10.out_channels < 3:
        raise ValueError("identity_init_ needs at least 3 channels in conv1 and conv10")
    for conv in (c1, c10, out):
        conv.weight[:3].zero_()
        conv.bias[:3].zero_()
        kh, kw = conv.kernel_size
        for c in range(3):
            conv.weight[c, c, kh // 2, kw // 2] = 1.0
    d2.weight[:, :3].zero_()  # ConvTranspose2d weight is (in, out, k, k)
    d2.bias[:3].fill_(_LIVE_BIAS)
    # conv10 and output copy the +_LIVE_BIAS through channels 0-2; cancel it at the end
    out.bias[:3].fill_(-_LIVE_BIAS)
    return model


def training_loss(output, rainy, clean, px, aux_weight: float = 1.0):
    """Teacher training loss of a raw AGAN output ``(masks, frame 1/4, frame 1/2, image)``: ``px`` on
    the image; with ``aux_weight``, the official side losses: the 1/4 and 1/2 frames (weights 0.6 and
    0.8 against the downscaled clean image) and the attention maps (MSE to the mask of pixels the rain
    changed by more than 30/255, later steps weighted more, theta 0.8), scaled by 0.1."""
    def resize(t, like):
        return t if t.shape[-2:] == like.shape[-2:] else F.interpolate(t, size=like.shape[-2:], mode="area")

    masks, f1, f2, img = output
    total = px(img, clean)
    if aux_weight:
        total = total + aux_weight * (0.6 * px(f1, resize(clean, f1)) + 0.8 * px(f2, resize(clean, f2)))
        target = ((rainy - clean).abs().amax(1, keepdim=True) > 30 / 255).float()
        n = len(masks)
        att = sum(0.8 ** (n - 1 - t) * F.mse_loss(m, target) for t, m in enumerate(masks))
        total = total + 0.1 * aux_weight * att
    return total
