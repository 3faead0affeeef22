"""The ResNet-18 of TPSMM's keypoint detector and background predictor, with its width a setting.

At width 64 (the default, and every published checkpoint) it is torchvision's ``resnet18`` itself,
built as the original builds it. Other widths keep torchvision's layout and state-dict names
(conv1, bn1, layer1–4 of two BasicBlocks each, fc) with channels w, 2w, 4w, 8w instead of 64–512:
a project addition for small CPU models (`make demo` ships TPSMM at width 16: 1/16 of the
parameters), not part of the original.
"""
from torch import nn
from torchvision import models
from torchvision.models.resnet import BasicBlock

PUBLISHED_WIDTH = 64


def resnet18(num_outputs, in_channels=3, width=PUBLISHED_WIDTH):
    """A randomly initialised ResNet-18 (B, in_channels, H, W) → (B, num_outputs)."""
    if width == PUBLISHED_WIDTH:
        # As the original: torchvision's network, then its first conv and fc replaced (the same
        # random draws in the same order, so a seeded run starts from the same weights as before).
        network = models.resnet18(weights=None)
        if in_channels != 3:
            network.conv1 = nn.Conv2d(in_channels, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)
        network.fc = nn.Linear(network.fc.in_features, num_outputs)
        return network
    return NarrowResNet18(width, num_outputs, in_channels)


class NarrowResNet18(nn.Module):
    """torchvision's ResNet-18 at base width ``width``: forward (B, C, H, W) → (B, num_outputs).

    Initialised as torchvision initialises its ResNets (Kaiming-normal convolutions, BatchNorm 1/0).
    """

    def __init__(self, width, num_outputs, in_channels=3):
        super().__init__()
        if width < 1:
            raise ValueError(f"ResNet-18 width must be at least 1, got {width}")
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = width
        for index, (planes, stride) in enumerate(((width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)), 1):
            downsample = None
            if stride != 1 or channels != planes:
                downsample = nn.Sequential(nn.Conv2d(channels, planes, kernel_size=1, stride=stride, bias=False),
                                           nn.BatchNorm2d(planes))
            setattr(self, f"layer{index}", nn.Sequential(BasicBlock(channels, planes, stride, downsample),
                                                         BasicBlock(planes, planes)))
            channels = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_outputs)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))
