"""DuRN-S-P (Liu et al., CVPR 2019): Dual Residual Network for raindrop removal.

A re-write for dreamlib of the raindrop model of liu-vis/DualResidualNetworks
(``pietorch/DuRN_S_P.py``, class ``cleaner``). Every ``state_dict`` key and shape
equals the official one, so the released ``DuRN_S_P_model.pt`` (a raw state dict)
loads with ``strict=True``. The official configuration has 10,176,964 parameters
and is the only one of the paper's four networks with BatchNorm (running stats).

Topology (official widths: ``width`` = 64, ``inner_width`` = 128)::

    x (B,3,H,W) ─ conv1 5x5 pad 1 ─ norm1 ─ ReLU            (B, 64, H-2,  W-2)
                ─ conv2 3x3 /2    ─ norm2 ─ ReLU            (B,128, ~H/2, ~W/2)
                ─ conv3 3x3 /2    ─ norm3 ─ ReLU            (B,128,  H/4,  W/4)
                ─ rud1..rud3  DuRB-S (SE), up-conv dilation 12 / 8 / 6
                ─ rud4..rud9  DuRB-P, up-conv (kernel, dilation) =
                              (3,2) (5,1) (3,3) (7,1) (3,4) (7,1)
                ─ deconv1 (4x4 /2 transposed conv, reflect-pad + 2x2 avg) (B,128, H/2, W/2)
                ─ conv4 3x3 ─ norm4 ─ ReLU
                ─ deconv2 (4x4 /2 transposed conv, reflect-pad + 2x2 avg) (B, 64, H, W)
                ─ end_conv 5x5 ─ tanh = r
    output = x - r                                            (B,3,H,W)

Input size. ``conv1`` (5x5 with zero padding 1) shrinks the map by 2 pixels;
the two stride-2 convs then floor, and the two transposed convs exactly double.
Only for H = 4k does this give back H (4k -> 4k-2 -> 2k-1 -> k -> 2k -> 4k);
4k+1 and 4k+2 come back as 4k and 4k+3 as 4k+4, so ``residual - x`` would not
broadcast. The official code never pads: its RainDrop test loader crops every
image to a multiple of 4 (``align_to_k(img, k=4)``). Hence ``PAD_MULTIPLE = 4``.
In addition the reflection pads inside the bottleneck (7x7 up-convs: pad 3)
need the H/4 x W/4 map to be at least 4x4, i.e. H, W >= 16 after padding:
see :func:`required_input_size`.

Channel order. The official training and test scripts read the RainDrop images
with OpenCV and feed them unchanged, so the released checkpoint expects **BGR**
input in [0, 1] and produces BGR output (``INPUT_CHANNEL_ORDER``). The network
itself is channel-order agnostic; callers with RGB tensors and the official
weights should flip channels before and after.

Official oddities kept for checkpoint compatibility:

- ``prelu`` (``nn.PReLU()``, 1 parameter) is created but never used in forward;
- the SE block's hidden size is a fixed 64 (the official argument is called
  ``reduction`` but is the width of the hidden layer, not a ratio);
- dilated convs use zero padding (= dilation), all undilated ``ConvLayer``\\ s use
  reflection padding; ``conv1`` uses zero padding 1 despite its 5x5 kernel.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "DuRN",
    "DualResidualBlock",
    "CONFIGS",
    "build",
    "final_image",
    "PAD_MULTIPLE",
    "FEATURE_LAYER",
    "prunable_modules",
    "required_input_size",
    "INPUT_CHANNEL_ORDER", "training_loss"]

# Channel order the released checkpoint was trained with (cv2.imread, no conversion).
INPUT_CHANNEL_ORDER = "BGR"

# Official DuRB-P up-conv (kernel, dilation) pairs of rud4..rud9.
_OFFICIAL_P_BLOCKS = ((3, 2), (5, 1), (3, 3), (7, 1), (3, 4), (7, 1))


class ConvLayer(nn.Module):
    """Size-preserving stride-1 conv: reflection padding if undilated, zero padding if dilated.

    State dict: ``conv2d.weight`` (out, in, k, k), ``conv2d.bias`` (out,).
    (B, in, H, W) -> (B, out, H, W) for odd ``kernel_size``.

    The official layer pads a dilated conv with ``padding=dilation``, which keeps
    the size for the 3x3 kernels it is used with; ``dilation * (k - 1) // 2`` is
    the same number for k = 3 and stays size-preserving for other kernels.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, dilation: int = 1):
        super().__init__()
        self.dilation = int(dilation)
        if self.dilation == 1:
            self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
            self.conv2d = nn.Conv2d(in_ch, out_ch, kernel_size, 1)
        else:
            self.conv2d = nn.Conv2d(in_ch, out_ch, kernel_size, 1, dilation=self.dilation,
                                    padding=self.dilation * (kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dilation == 1:
            x = self.reflection_pad(x)
        return self.conv2d(x)


class FeatNorm(nn.Module):
    """BatchNorm2d wrapped once more, only so the keys read ``<name>.norm.weight`` as in the official code."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class ChannelGate(nn.Module):
    """Squeeze-and-excitation gate: x * sigmoid(W2 relu(W1 avgpool(x))).

    State dict: ``fc.0`` Linear(C, hidden), ``fc.2`` Linear(hidden, C), both with bias.
    (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(),
            nn.Linear(hidden, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.fc(x.mean(dim=(2, 3)))
        return x * w[:, :, None, None]


class SEResBlock(nn.Module):
    """Residual block conv3x3-BN-ReLU-conv3x3-BN-SE, + input, ReLU (official ``SEBasicBlock``).

    The 3x3 convs have no bias and zero padding 1. State dict: ``conv1.weight``,
    ``conv2.weight`` (C, C, 3, 3), ``se.fc.{0,2}``, ``bn1``, ``bn2`` (BatchNorm2d(C)).
    (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        # Registration order follows the official module (conv1, conv2, se, bn1, bn2).
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.se = ChannelGate(channels, hidden)
        self.relu = nn.ReLU()
        self.bn1 = nn.BatchNorm2d(channels)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + x)


class DualResidualBlock(nn.Module):
    """DuRB: a residual conv pair, then two "dual residual" transforms T1 / T2.

    ``forward(x, res) -> (x_out, res_out)``, all (B, C, H, W):

    - ``h = relu(norm2(conv2(relu(norm1(conv1(x)))) + x))``  (plain residual pair, 3x3 reflect);
    - T1: ``res_out = relu(up_norm(up_conv(h)) + res)``  (large/dilated kernel, adds the
      *previous block's* T1 output: the second residual path);
    - T2: ``x_out = relu(down_norm(down_conv(g)) + x)`` with ``g = se(res_out)`` for
      DuRB-S (``se_hidden`` given, 3x3 ``down_conv``) and ``g = res_out`` for DuRB-P
      (5x5 ``down_conv``).

    State dict: ``conv1``/``conv2``/``up_conv``/``down_conv`` ``.conv2d.{weight,bias}``,
    ``norm1``/``norm2``/``up_norm``/``down_norm`` ``.norm.*`` and, for DuRB-S, ``se.*``.
    """

    def __init__(self, channels: int, up_kernel: int, up_dilation: int, se_hidden: int | None = None):
        super().__init__()
        c = channels
        self.conv1 = ConvLayer(c, c, 3)
        self.norm1 = FeatNorm(c)
        self.conv2 = ConvLayer(c, c, 3)
        self.norm2 = FeatNorm(c)
        self.up_conv = ConvLayer(c, c, up_kernel, dilation=up_dilation)
        self.up_norm = FeatNorm(c)
        self.with_se = se_hidden is not None
        if self.with_se:  # DuRB-S: SE residual block before a 3x3 T2 conv
            self.se = SEResBlock(c, se_hidden)
            self.down_conv = ConvLayer(c, c, 3)
        else:  # DuRB-P: plain 5x5 T2 conv
            self.down_conv = ConvLayer(c, c, 5)
        self.down_norm = FeatNorm(c)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor, res: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_in = x
        h = self.relu(self.norm1(self.conv1(x)))
        h = self.relu(self.norm2(self.conv2(h) + x_in))
        res = self.relu(self.up_norm(self.up_conv(h)) + res)
        h = self.se(res) if self.with_se else res
        x = self.relu(self.down_norm(self.down_conv(h)) + x_in)
        return x, res


def _upsampler(in_ch: int, out_ch: int) -> nn.Sequential:
    """4x4 stride-2 transposed conv (exactly doubles H, W), then a shift-free 2x2 blur.

    The one-pixel reflection pad on the top/left followed by a 2x2 stride-1
    average keeps the doubled size while smoothing checkerboard artefacts.
    Index 0 holds the only parameters (``<name>.0.weight`` (in, out, 4, 4), ``.0.bias``).
    """
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1),
        nn.ReflectionPad2d((1, 0, 1, 0)),
        nn.AvgPool2d(2, stride=1),
        nn.ReLU(),
    )


class DuRN(nn.Module):
    """DuRN-S-P raindrop remover (official ``cleaner``).

    Args:
        width: channels of the full-resolution layers (conv1, deconv2); official 64.
        inner_width: channels at 1/2 and 1/4 resolution; official 128.
        se_hidden: hidden width of the SE gates in the DuRB-S blocks; official 64.
        s_dilations: one entry per DuRB-S block, the dilation of its 3x3 up-conv;
            official (12, 8, 6).
        p_blocks: one ``(kernel, dilation)`` per DuRB-P block for its up-conv;
            official ((3,2), (5,1), (3,3), (7,1), (3,4), (7,1)).

    Blocks are registered as ``rud1 .. rudN``: DuRB-S first, then DuRB-P, so the
    official configuration yields exactly the official keys.

    ``forward(x)`` takes (B, 3, H, W) with H, W multiples of 4 (and >= 16) and returns
    one tensor (B, 3, H, W): ``x - tanh(end_conv(...))``.
    """

    def __init__(self, width: int = 64, inner_width: int = 128, se_hidden: int = 64,
                 s_dilations=(12, 8, 6), p_blocks=_OFFICIAL_P_BLOCKS):
        super().__init__()
        w, c = int(width), int(inner_width)
        self.s_dilations = tuple(int(d) for d in s_dilations)
        self.p_blocks = tuple((int(k), int(d)) for k, d in p_blocks)

        # Encoder. conv1 keeps the official zero padding of 1 on a 5x5 kernel (shrinks by 2).
        self.conv1 = nn.Conv2d(3, w, kernel_size=5, stride=1, padding=1)
        self.norm1 = FeatNorm(w)
        self.conv2 = nn.Conv2d(w, c, kernel_size=3, stride=2, padding=1)
        self.norm2 = FeatNorm(c)
        self.conv3 = nn.Conv2d(c, c, kernel_size=3, stride=2, padding=1)
        self.norm3 = FeatNorm(c)

        # Bottleneck at 1/4 resolution.
        names = []
        for d in self.s_dilations:
            names.append(f"rud{len(names) + 1}")
            self.add_module(names[-1], DualResidualBlock(c, 3, d, se_hidden=int(se_hidden)))
        for k, d in self.p_blocks:
            names.append(f"rud{len(names) + 1}")
            self.add_module(names[-1], DualResidualBlock(c, k, d))
        self.block_names = tuple(names)

        # Decoder.
        self.deconv1 = _upsampler(c, c)
        self.conv4 = ConvLayer(c, c, 3)
        self.norm4 = FeatNorm(c)
        self.deconv2 = _upsampler(c, w)
        self.end_conv = ConvLayer(w, 3, 5)

        self.relu = nn.ReLU()
        self.tanh = nn.Tanh()
        # Unused in forward, kept only because the official checkpoint has ``prelu.weight``.
        self.prelu = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x
        x = self.relu(self.norm1(self.conv1(x)))
        x = self.relu(self.norm2(self.conv2(x)))
        x = self.relu(self.norm3(self.conv3(x)))

        # The second residual stream starts from the encoder output and is
        # restarted from the block output when switching from DuRB-S to DuRB-P.
        res = x
        n_s = len(self.s_dilations)
        for i, name in enumerate(self.block_names):
            if i == n_s:
                res = x
            x, res = getattr(self, name)(x, res)

        x = self.deconv1(x)
        x = self.relu(self.norm4(self.conv4(x)))
        x = self.deconv2(x)
        return image - self.tanh(self.end_conv(x))


CONFIGS = {
    # pietorch/DuRN_S_P.py cleaner() -> 10,176,964 parameters.
    "official": dict(width=64, inner_width=128, se_hidden=64,
                     s_dilations=(12, 8, 6), p_blocks=_OFFICIAL_P_BLOCKS),
    # Same topology (encoder, DuRB-S with SE, DuRB-P, decoder, BatchNorm) with one
    # DuRB-S and two DuRB-P at widths 16/32. The S dilation is 4 rather than 12
    # because training crops of 64-96 px give a 16-24 px bottleneck.
    "small": dict(width=16, inner_width=32, se_hidden=16,
                  s_dilations=(4,), p_blocks=((3, 2), (5, 1))),
}


def build(**kwargs) -> DuRN:
    return DuRN(**kwargs)


def final_image(output) -> torch.Tensor:
    """The official forward returns the restored image itself (``input - tanh(...)``)."""
    return output


# H, W must be multiples of 4 (two stride-2 convs after the shrinking conv1; see
# the module docstring). Same for every configuration.
PAD_MULTIPLE = 4

# Smallest input side: the 7x7 (official) reflection-padded up-conv needs a 4x4 bottleneck.
MIN_INPUT_SIZE = 16


def required_input_size(h: int, w: int) -> tuple[int, int]:
    """The (H, W) an h x w image must be padded to before ``DuRN.forward``.

    Padding to a multiple of :data:`PAD_MULTIPLE` is enough for h, w >= 13;
    smaller images must be padded further, to :data:`MIN_INPUT_SIZE`, because the
    reflection pads in the 1/4-resolution bottleneck need at least 4x4 there (a
    single reflect pad of the input can also only add fewer pixels than the side
    has, so very small images need replicate/repeated padding).
    """
    def up(n: int) -> int:
        return max(MIN_INPUT_SIZE, -(-int(n) // PAD_MULTIPLE) * PAD_MULTIPLE)

    return up(h), up(w)


# Last DuRB-P block's x output, upsampled by the first transposed conv and ReLU'd:
# (B, inner_width, H/2, W/2), 128 channels officially. (The blocks themselves return
# a tuple (x, res), so they cannot serve as a single-tensor hook point.)
FEATURE_LAYER = "deconv1"


def prunable_modules(model: DuRN) -> list[str]:
    """Forward-ordered module names, one per stage a user would prune at a time.

    ``conv1``, ``conv2``, ``conv3`` (encoder), ``rud1 .. rudN`` (each DuRB including
    its SE block and SE Linear layers), ``deconv1``, ``conv4``, ``deconv2``,
    ``end_conv``. Disjoint; together they hold every Conv2d, ConvTranspose2d and
    Linear of the model (``prelu`` holds no conv and is unused).
    """
    return (["conv1", "conv2", "conv3"] + list(model.block_names)
            + ["deconv1", "conv4", "deconv2", "end_conv"])


def training_loss(output, rainy, clean, px, aux_weight: float = 1.0):
    """Teacher training loss of a DuRN output (the image): ``px`` on it; DuRN has no side outputs."""
    return px(output, clean)
