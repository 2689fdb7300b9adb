"""Reference ImageNet backbones from the paper's Table 1, written without torchvision.

The layer layouts (and hence parameter counts) match torchvision's ``resnet18``, ``resnet50``,
``mobilenet_v2``, ``shufflenet_v2_x1_0`` and ``googlenet`` (without auxiliary heads) exactly, so latency
measured here is comparable with published numbers for those models. Every model is built only from ops
that export to ONNX opset 13 with static shapes and that TensorRT 8.2 parses (channel shuffle is a
reshape/transpose pair, GoogLeNet's ceil-mode max pools map onto MaxPool's ``ceil_mode``).

Host side only: this module imports torch at import time; ``dfseg`` itself never imports it eagerly.
"""

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Type, Union

import torch
from torch import Tensor, nn

from ..arch import REFERENCE_MODEL_NAMES

__all__ = ["REFERENCE_FACTS", "REFERENCE_MODELS", "PaperFacts", "googlenet", "mobilenet_v2", "resnet18", "resnet50",
           "shufflenet_v2_x1_0"]


# ---------------------------------------------------------------------------------------------------------
# ResNet (v1.5: the stride of a bottleneck sits on its 3x3 conv, as in torchvision)
# ---------------------------------------------------------------------------------------------------------


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = _conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block: Type[Union[BasicBlock, Bottleneck]], layers: List[int], num_classes: int = 1000):
        super().__init__()
        self.in_channels = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        _init_weights(self)

    def _make_layer(
        self, block: Type[Union[BasicBlock, Bottleneck]], width: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        out_channels = width * block.expansion
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = nn.Sequential(_conv1x1(self.in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
        layers = [block(self.in_channels, width, stride, downsample)]
        self.in_channels = out_channels
        layers.extend(block(out_channels, width) for _ in range(1, blocks))
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes)


# ---------------------------------------------------------------------------------------------------------
# MobileNetV2 (width multiplier 1.0)
# ---------------------------------------------------------------------------------------------------------


def _conv_bn_relu6(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


class MobileInvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: List[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(in_channels, hidden, kernel_size=1))
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),  # linear bottleneck: no activation
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


# (expand ratio t, output channels c, repeats n, first stride s) from the MobileNetV2 paper, Table 2.
_MOBILENET_V2_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                          (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        in_channels, last_channels = 32, 1280
        features: List[nn.Module] = [_conv_bn_relu6(3, in_channels, stride=2)]
        for expand_ratio, out_channels, repeats, first_stride in _MOBILENET_V2_SETTINGS:
            for index in range(repeats):
                stride = first_stride if index == 0 else 1
                features.append(MobileInvertedResidual(in_channels, out_channels, stride, expand_ratio))
                in_channels = out_channels
        features.append(_conv_bn_relu6(in_channels, last_channels, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channels, num_classes))
        _init_weights(self, linear_std=0.01)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v2(num_classes: int = 1000) -> MobileNetV2:
    return MobileNetV2(num_classes)


# ---------------------------------------------------------------------------------------------------------
# ShuffleNetV2 1.0x
# ---------------------------------------------------------------------------------------------------------


def _channel_shuffle(x: Tensor, groups: int) -> Tensor:
    # With a static-shape export, constant folding turns these traced sizes into constant Reshape targets,
    # so TensorRT 8.2 sees a plain Reshape/Transpose/Reshape (tests check that no Shape op survives).
    batch, channels, height, width = x.shape
    x = x.reshape(batch, groups, channels // groups, height, width)
    return x.transpose(1, 2).reshape(batch, channels, height, width)


def _conv_bn_layers(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                    relu: bool = True) -> List[nn.Module]:
    layers: List[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return layers


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: stride 1 splits channels in half; stride 2 feeds both branches the full input."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        branch_channels = out_channels // 2
        self.stride = stride
        self.branch_channels = branch_channels
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"a stride-1 shuffle unit keeps its width, got {in_channels} -> {out_channels} channels")
        # Flat Sequentials keep state_dict keys identical to torchvision's, so its weights load unchanged.
        self.branch1 = nn.Sequential()
        if stride > 1:
            self.branch1 = nn.Sequential(
                *_conv_bn_layers(in_channels, in_channels, 3, stride, groups=in_channels, relu=False),
                *_conv_bn_layers(in_channels, branch_channels, 1),
            )
        self.branch2 = nn.Sequential(
            *_conv_bn_layers(in_channels if stride > 1 else branch_channels, branch_channels, 1),
            *_conv_bn_layers(branch_channels, branch_channels, 3, stride, groups=branch_channels, relu=False),
            *_conv_bn_layers(branch_channels, branch_channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            # Slicing at a Python-int boundary exports as a constant Slice; Tensor.chunk would export a
            # Shape/Gather/Div chain that TensorRT 8.2 handles poorly.
            kept, processed = x[:, : self.branch_channels], x[:, self.branch_channels :]
            out = torch.cat((kept, self.branch2(processed)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return _channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, stage_repeats: List[int], stage_channels: List[int], num_classes: int = 1000):
        super().__init__()
        if len(stage_repeats) != 3 or len(stage_channels) != 5:
            raise ValueError("ShuffleNetV2 needs 3 stage repeats and 5 stage channel counts")
        in_channels = stage_channels[0]
        self.conv1 = nn.Sequential(*_conv_bn_layers(3, in_channels, 3, stride=2))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages = []
        for repeats, out_channels in zip(stage_repeats, stage_channels[1:4]):
            units = [ShuffleUnit(in_channels, out_channels, 2)]
            units.extend(ShuffleUnit(out_channels, out_channels, 1) for _ in range(repeats - 1))
            stages.append(nn.Sequential(*units))
            in_channels = out_channels
        self.stage2, self.stage3, self.stage4 = stages
        self.conv5 = nn.Sequential(*_conv_bn_layers(in_channels, stage_channels[-1], 1))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(stage_channels[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def shufflenet_v2_x1_0(num_classes: int = 1000) -> ShuffleNetV2:
    return ShuffleNetV2([4, 8, 4], [24, 116, 232, 464, 1024], num_classes)


# ---------------------------------------------------------------------------------------------------------
# GoogLeNet (Inception v1 with batch norm, no auxiliary classifiers)
# ---------------------------------------------------------------------------------------------------------


class _ConvBNReLU(nn.Module):
    # Attribute names (conv, bn) match torchvision's BasicConv2d so its state_dict loads unchanged.
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    def __init__(self, in_channels: int, ch1x1: int, ch3x3_reduce: int, ch3x3: int, ch5x5_reduce: int, ch5x5: int,
                 pool_proj: int):
        super().__init__()
        self.branch1 = _ConvBNReLU(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(_ConvBNReLU(in_channels, ch3x3_reduce, 1),
                                     _ConvBNReLU(ch3x3_reduce, ch3x3, 3, padding=1))
        # The "5x5" branch uses a 3x3 conv, as torchvision's implementation does; that is what makes the
        # parameter count 6,624,904 and keeps latency comparable with the commonly benchmarked model.
        self.branch3 = nn.Sequential(_ConvBNReLU(in_channels, ch5x5_reduce, 1),
                                     _ConvBNReLU(ch5x5_reduce, ch5x5, 3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     _ConvBNReLU(in_channels, pool_proj, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)), dim=1)


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = _ConvBNReLU(3, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = _ConvBNReLU(64, 64, 1)
        self.conv3 = _ConvBNReLU(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(1024, num_classes)
        _init_weights(self, linear_std=0.01)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        x = self.inception4b(x)
        x = self.inception4c(x)
        x = self.inception4d(x)
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


def googlenet(num_classes: int = 1000) -> GoogLeNet:
    return GoogLeNet(num_classes)


# ---------------------------------------------------------------------------------------------------------
# Shared initialisation and the registry
# ---------------------------------------------------------------------------------------------------------


def _init_weights(model: nn.Module, linear_std: Optional[float] = None) -> None:
    # Untrained reference models are only used for shape/latency work; a sane init still keeps activations
    # finite so ONNX-vs-torch comparisons are meaningful.
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear_std is not None:
            nn.init.normal_(module.weight, 0, linear_std)
            nn.init.zeros_(module.bias)


shufflenet_v2 = shufflenet_v2_x1_0  # the registry's name for it
# One builder per name of dfseg.arch.REFERENCE_MODEL_NAMES (the one list of names), looked up by that name.
REFERENCE_MODELS: Dict[str, Callable[..., nn.Module]] = {name: globals()[name] for name in REFERENCE_MODEL_NAMES}


@dataclass(frozen=True)
class PaperFacts:
    """One row of the paper's Table 1 (ImageNet top-1, TX2 latency at 224x224, FLOPs as printed)."""

    label: str
    top1_percent: float
    tx2_latency_ms: float
    flops_text: str

    @property
    def flops(self) -> float:
        """The FLOPs column as a number ("1.8G" -> 1.8e9); the paper counts multiply-adds as one FLOP."""
        scale = {"M": 1e6, "G": 1e9}[self.flops_text[-1]]
        return float(self.flops_text[:-1]) * scale


REFERENCE_FACTS: Dict[str, PaperFacts] = {
    "shufflenet_v2": PaperFacts("ShuffleNet_V2", 69.4, 4.1, "146M"),
    "resnet18": PaperFacts("ResNet-18", 69.0, 4.4, "1.8G"),
    "googlenet": PaperFacts("GoogLeNet", 68.7, 5.1, "1.43G"),
    "mobilenet_v2": PaperFacts("MobileNet_V2", 71.9, 8.7, "300M"),
    "resnet50": PaperFacts("ResNet-50", 75.3, 10.6, "3.8G"),
    "df1": PaperFacts("DF1", 69.8, 2.5, "746M"),
    "df2": PaperFacts("DF2", 73.9, 5.0, "1.77G"),
    "df2a": PaperFacts("DF2A", 76.0, 6.5, "1.97G"),
}
