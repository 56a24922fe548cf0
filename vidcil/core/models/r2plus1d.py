"""A light (2+1)D ResNet: every convolution is a 3x3 spatial one followed by a 3-frame temporal one.

Where TSM lets a frame see its neighbours by shifting a slice of channels, here every layer
learns a temporal filter over all its channels (Tran et al., 2018, "A closer look at
spatiotemporal convolutions"): a bias towards motion that a 2D backbone trained from scratch on a
few dozen clips per class does not have (it learns the clips' appearance instead).

It runs on the same ``[N*T, C, H, W]`` layout as the TSM backbones and never strides in time, so
its four stages ``layer1`` .. ``layer4`` (output stride 4, 8, 16, 32) give ``[N, T, C, H, W]``
features like theirs, and every distiller, head and channel matcher works on it unchanged.
``r2plus1d_10``: a stem and one residual block per stage (10 weight layers), 32-64-128-256
channels, 1.8 M parameters (resnet18: 11.2 M): small enough to learn from scratch, and on CPUs.
"""

from __future__ import annotations

import torch
from torch import nn

WIDTHS = {"r2plus1d_10": (32, 64, 128, 256)}


class Conv2Plus1d(nn.Module):
    """3x3 spatial convolution (``stride``), batch norm, ReLU, then a 3-frame temporal convolution.

    Input and output ``[N*T, C, H, W]``, ``num_segments`` frames per clip; the temporal
    convolution is zero-padded at each clip's ends, so no frame sees another clip."""

    def __init__(self, cin: int, cout: int, num_segments: int, stride: int = 1):
        super().__init__()
        self.num_segments = num_segments
        self.spatial = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.temporal = nn.Conv3d(cout, cout, (3, 1, 1), padding=(1, 0, 0), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.spatial(x)))
        nt, c, h, w = x.shape
        t = self.num_segments
        x = x.view(nt // t, t, c, h, w).transpose(1, 2)  # [N, C, T, H, W]
        x = self.temporal(x.contiguous())
        return x.transpose(1, 2).reshape(nt, c, h, w)


class Block(nn.Module):
    """A residual block of two (2+1)D convolutions; ``relu`` is applied to the sum (the distillation site's input)."""

    def __init__(self, cin: int, cout: int, num_segments: int, stride: int):
        super().__init__()
        self.conv1 = Conv2Plus1d(cin, cout, num_segments, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = Conv2Plus1d(cout, cout, num_segments)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else nn.Identity())
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        return self.relu(out + self.downsample(x))


def r2plus1d_stages(arch: str, num_segments: int) -> tuple[list[nn.Module], int]:
    """The four stages (output stride 4, 8, 16, 32) and the last one's channel count."""
    w1, w2, w3, w4 = WIDTHS[arch]
    stem = nn.Sequential(Conv2Plus1d(3, w1, num_segments, stride=2), nn.BatchNorm2d(w1), nn.ReLU(inplace=True))
    stages = [nn.Sequential(stem, Block(w1, w1, num_segments, 2)), Block(w1, w2, num_segments, 2),
              Block(w2, w3, num_segments, 2), Block(w3, w4, num_segments, 2)]
    for m in nn.ModuleList(stages).modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, Block):  # each residual branch starts at zero: the block starts as its shortcut
            nn.init.zeros_(m.bn2.weight)
    return stages, w4
