"""ResNet image classifiers defined in the project (torchvision's wheel cannot load beside the CPU torch).

Module names match torchvision's `resnet18` / `resnet50` exactly (conv1, bn1, layer1.0.downsample.0, fc,
...), so a torchvision state dict loads unchanged when a local weights file is given. Initialisation follows
torchvision (Kaiming-normal convolutions, unit BatchNorm) under a fixed seed, so random weights are the same
on every machine and run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet v1.5: the stride sits on the 3x3 convolution, as in torchvision."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


@dataclass(slots=True, frozen=True)
class ResNetSpec:
    block: Literal["basic", "bottleneck"]
    layers: tuple[int, int, int, int]
    base_width: int = 64  # channels of the stem; stages double it (64 for the standard networks)


ARCHITECTURES: dict[str, ResNetSpec] = {
    "resnet50": ResNetSpec("bottleneck", (3, 4, 6, 3)),
    "resnet18": ResNetSpec("basic", (2, 2, 2, 2)),
    # A few MFLOPs: fast tests of the serving path that do not care about the network's size.
    "resnet-tiny": ResNetSpec("basic", (1, 1, 1, 1), base_width=8),
}


class ResNet(nn.Module):
    def __init__(self, spec: ResNetSpec, num_classes: int = 1000) -> None:
        super().__init__()
        block = BasicBlock if spec.block == "basic" else Bottleneck
        width = spec.base_width
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._stage(block, width, spec.layers[0], stride=1)
        self.layer2 = self._stage(block, width * 2, spec.layers[1], stride=2)
        self.layer3 = self._stage(block, width * 4, spec.layers[2], stride=2)
        self.layer4 = self._stage(block, width * 8, spec.layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

    def _stage(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int,
               stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_resnet(arch: str, num_classes: int = 1000, seed: int = 0) -> ResNet:
    """A randomly initialised network in eval mode; the same `seed` gives the same weights everywhere.

    Called by the vision model store (before loading a weights file, if one is given) and the PyTorch
    backend. Raises KeyError naming the known architectures for an unknown `arch`."""
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown vision architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    # fork_rng: a fixed seed here must not reset the caller's global random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ResNet(ARCHITECTURES[arch], num_classes)
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
    return model.eval()
