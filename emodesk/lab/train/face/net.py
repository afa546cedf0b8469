"""The face-expression network: a small pre-activation ResNet for 48×48 gray crops.

Why this shape: on FER-2013, ResNet/VGG-style networks trained from scratch
with augmentation reach the low 70s, and the live app scores every frame on
one CPU thread, so the network is narrow (widths 32→256) with most blocks at
low resolution. The exported graph includes test-time horizontal flipping
(mean of the two softmaxes) and the softmax itself, so the app receives
probabilities.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.short = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        sc = self.short(o) if self.short is not None else x
        o = self.conv1(o)
        o = self.conv2(F.relu(self.bn2(o)))
        return o + sc


class FaceNet(nn.Module):
    """Stem at 48×48, then stages at 24, 12, 6 pixels (``blocks`` per stage)."""

    def __init__(
        self,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        blocks: tuple[int, ...] = (1, 2, 2, 2),
        n_classes: int = 7,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"widths": list(widths), "blocks": list(blocks), "dropout": dropout}
        self.stem = nn.Conv2d(1, widths[0], 3, 1, 1, bias=False)
        layers: list[nn.Module] = []
        cin = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                layers.append(PreActBlock(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for (N, 1, 48, 48) inputs scaled to [-1, 1]."""
        o = self.layers(self.stem(x))
        o = F.relu(self.bn(o))
        o = F.adaptive_avg_pool2d(o, 1).flatten(1)
        return self.fc(self.drop(o))


class FlipAveragedProbs(nn.Module):
    """What ships: softmax averaged over the crop and its mirror image."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(self.net(x), dim=1)
        q = torch.softmax(self.net(torch.flip(x, dims=[3])), dim=1)
        return (p + q) * 0.5
