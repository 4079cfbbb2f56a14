"""Networks dreamlib does not ship, written from their papers' descriptions (small sizes).

- :class:`PReNetLike`: Ren et al., "Progressive Image Deraining Networks" (CVPR 2019): one
  recurrent unit (conv f_in on [rainy, previous estimate] -> ConvLSTM -> residual blocks ->
  conv f_out) applied for T stages with shared weights; each stage adds its output to the rainy
  input; the forward returns ``(final image, [every stage's image])``.
- :class:`TinyRestormer`: a transformer-style restoration net in the manner of Restormer
  (Zamir et al., CVPR 2022): LayerNorm over channels, multi-Dconv head *transposed* (channel)
  attention, a gated feed-forward network with Linear layers, a global residual.
- :class:`DnCNN`: Zhang et al., "Beyond a Gaussian Denoiser" (TIP 2017): conv+ReLU, (depth-2) x
  conv+BN+ReLU, conv; residual learning (the net predicts the noise, output = input - noise).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PReNetLike(nn.Module):
    def __init__(self, width: int = 16, stages: int = 3, blocks: int = 2):
        super().__init__()
        self.stages = stages
        self.conv0 = nn.Sequential(nn.Conv2d(6, width, 3, 1, 1), nn.ReLU())
        self.conv_i = nn.Sequential(nn.Conv2d(2 * width, width, 3, 1, 1), nn.Sigmoid())
        self.conv_f = nn.Sequential(nn.Conv2d(2 * width, width, 3, 1, 1), nn.Sigmoid())
        self.conv_g = nn.Sequential(nn.Conv2d(2 * width, width, 3, 1, 1), nn.Tanh())
        self.conv_o = nn.Sequential(nn.Conv2d(2 * width, width, 3, 1, 1), nn.Sigmoid())
        self.res = nn.ModuleList(nn.Sequential(nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(),
                                               nn.Conv2d(width, width, 3, 1, 1), nn.ReLU())
                                 for _ in range(blocks))
        self.conv = nn.Conv2d(width, 3, 3, 1, 1)
        self.width = width

    def forward(self, x):
        b, _, h, w = x.shape
        est = x
        hid = x.new_zeros(b, self.width, h, w)
        cell = x.new_zeros(b, self.width, h, w)
        images = []
        for _ in range(self.stages):
            f = self.conv0(torch.cat([x, est], 1))
            z = torch.cat([f, hid], 1)
            i, fg, g, o = self.conv_i(z), self.conv_f(z), self.conv_g(z), self.conv_o(z)
            cell = fg * cell + i * g
            hid = o * torch.tanh(cell)
            f = hid
            for block in self.res:
                f = F.relu(block(f) + f)
            est = x + self.conv(f)
            images.append(est)
        return est, images


class ChannelLayerNorm(nn.Module):
    """nn.LayerNorm over the channels of a (B, C, H, W) map."""

    def __init__(self, c):
        super().__init__()
        self.norm = nn.LayerNorm(c)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TransposedAttention(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.dw = nn.Conv2d(3 * c, 3 * c, 3, 1, 1, groups=3 * c)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.dw(self.qkv(x)).chunk(3, 1)
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(-1)
        return self.proj((attn @ v).reshape(b, c, h, w))


class GatedFFN(nn.Module):
    def __init__(self, c, expand=2):
        super().__init__()
        self.fc1 = nn.Linear(c, 2 * expand * c)
        self.fc2 = nn.Linear(expand * c, c)

    def forward(self, x):
        y = x.permute(0, 2, 3, 1)
        a, g = self.fc1(y).chunk(2, -1)
        return self.fc2(F.gelu(g) * a).permute(0, 3, 1, 2)


class TransformerBlock(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.norm1, self.attn = ChannelLayerNorm(c), TransposedAttention(c, heads)
        self.norm2, self.ffn = ChannelLayerNorm(c), GatedFFN(c)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class TinyRestormer(nn.Module):
    def __init__(self, width: int = 16, blocks: int = 2, heads: int = 2):
        super().__init__()
        self.embed = nn.Conv2d(3, width, 3, 1, 1)
        self.down = nn.Conv2d(width, 2 * width, 2, 2)  # needs even sizes: a spatial multiple of 2
        self.blocks = nn.Sequential(*(TransformerBlock(2 * width, heads) for _ in range(blocks)))
        self.up = nn.ConvTranspose2d(2 * width, width, 2, 2)
        self.refine = TransformerBlock(width, heads)
        self.out = nn.Conv2d(width, 3, 3, 1, 1)

    def forward(self, x):
        f = self.embed(x)
        f = self.refine(self.up(self.blocks(self.down(f))) + f)
        return x + self.out(f)


class DnCNN(nn.Module):
    def __init__(self, depth: int = 7, width: int = 32):
        super().__init__()
        layers = [nn.Conv2d(3, width, 3, 1, 1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, 3, 3, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x - self.body(x)


class NotAnImageNet(nn.Module):
    """Maps an image to a 1-channel map of half the size: dreamlib must refuse it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, 2, 1)

    def forward(self, x):
        return self.conv(x)


def train_denoiser(model: nn.Module, images: dict, *, sigma: float = 25.0, steps: int = 300, crop: int = 40,
                   batch: int = 16, lr: float = 2e-3, seed: int = 0) -> nn.Module:
    """A brief DnCNN training: random crops of the clean ``images`` plus Gaussian noise of ``sigma``
    (0-255 units), L2 loss, Adam with a cosine decay."""
    import numpy as np

    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    arrs = [torch.from_numpy(np.ascontiguousarray(v)).permute(2, 0, 1).float() for v in images.values()]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for _ in range(steps):
        xs = []
        for _ in range(batch):
            im = arrs[int(rng.integers(len(arrs)))]
            t, l = int(rng.integers(im.shape[1] - crop + 1)), int(rng.integers(im.shape[2] - crop + 1))
            xs.append(im[:, t:t + crop, l:l + crop])
        clean = torch.stack(xs)
        noisy = clean + sigma / 255 * torch.randn(clean.shape, generator=g)
        loss = F.mse_loss(model(noisy), clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()
