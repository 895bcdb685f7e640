"""Plain-PyTorch reimplementations of the zoo's torchvision architectures, for tests only.

torchvision is not installed here, so each model is rebuilt from torch.nn with
torchvision's module names and nesting (nn.Sequential indices included): its
state_dict keys, shapes and order are torchvision's, and trugrade's weights load
into it with load_state_dict(strict=True). Written from torchvision's source
(resnet.py, efficientnet.py, mobilenetv3.py, densenet.py, vgg.py; ops/misc.py for
Conv2dNormActivation and SqueezeExcitation). Extra switches mirror trugrade's
options: small_input (3x3 stride-1 stem, no max-pool), in_channels, dropout,
drop_path.
"""
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


def make_divisible(value, divisor=8):
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvNormActivation(nn.Sequential):
    """torchvision.ops.Conv2dNormActivation: .0 conv (no bias), .1 batchnorm, .2 activation."""

    def __init__(self, cin, cout, kernel, stride=1, groups=1, activation=None, eps=1e-5, momentum=0.1):
        layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(cout, eps=eps, momentum=momentum)]
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: x * scale(fc2(act(fc1(avgpool(x)))))."""

    def __init__(self, channels, squeeze, activation, scale_activation):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x):
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


# ---- ResNet ----

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class ResNet(nn.Module):
    def __init__(self, block, depths, num_classes=1000, in_channels=3, small_input=False):
        super().__init__()
        self.small_input = small_input
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for stage, depth in enumerate(depths):
            planes = 64 << stage
            blocks = []
            for i in range(depth):
                blocks.append(block(inplanes, planes, 2 if stage > 0 and i == 0 else 1))
                inplanes = planes * block.expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        if not self.small_input:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(**kw):
    return ResNet(BasicBlock, (2, 2, 2, 2), **kw)


def resnet34(**kw):
    return ResNet(BasicBlock, (3, 4, 6, 3), **kw)


def resnet50(**kw):
    return ResNet(Bottleneck, (3, 4, 6, 3), **kw)


# ---- EfficientNet-B0 ----

class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth, mode "row"."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = torch.empty([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype).bernoulli_(survival)
        return x * (noise / survival if survival > 0 else noise)


class MBConv(nn.Module):
    def __init__(self, cin, cout, expand_ratio, kernel, stride, drop_path):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        expanded = make_divisible(cin * expand_ratio)
        layers = []
        if expanded != cin:
            layers.append(ConvNormActivation(cin, expanded, 1, activation=nn.SiLU))
        layers.append(ConvNormActivation(expanded, expanded, kernel, stride, groups=expanded, activation=nn.SiLU))
        layers.append(SqueezeExcitation(expanded, max(1, cin // 4), nn.SiLU, nn.Sigmoid))
        layers.append(ConvNormActivation(expanded, cout, 1))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(drop_path)

    def forward(self, x):
        y = self.block(x)
        return self.stochastic_depth(y) + x if self.use_res_connect else y


def efficientnet_b0(num_classes=1000, in_channels=3, dropout=0.2, drop_path=0.2):
    setting = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
               (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]
    total = sum(s[5] for s in setting)
    layers = [ConvNormActivation(in_channels, 32, 3, 2, activation=nn.SiLU)]
    block_id = 0
    for expand, kernel, stride, cin, cout, count in setting:
        stage = []
        for i in range(count):
            stage.append(MBConv(cin if i == 0 else cout, cout, expand, kernel, stride if i == 0 else 1,
                                drop_path * block_id / total))
            block_id += 1
        layers.append(nn.Sequential(*stage))
    layers.append(ConvNormActivation(320, 1280, 1, activation=nn.SiLU))
    model = nn.Module()
    model.features = nn.Sequential(*layers)
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))
    return _Classifier(model)


class _Classifier(nn.Module):
    """features -> avgpool -> flatten -> classifier, with the inner module's names at top level."""

    def __init__(self, inner, final_relu=False):
        super().__init__()
        self.features = inner.features
        self.avgpool = inner.avgpool
        self.classifier = inner.classifier
        self.final_relu = final_relu

    def forward(self, x):
        x = self.features(x)
        if self.final_relu:
            x = F.relu(x)
        return self.classifier(torch.flatten(self.avgpool(x), 1))


# ---- MobileNetV3-Small ----

class InvertedResidual(nn.Module):
    def __init__(self, cin, kernel, expanded, cout, use_se, hardswish, stride):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        act = nn.Hardswish if hardswish else nn.ReLU
        norm = dict(eps=1e-3, momentum=0.01)
        layers = []
        if expanded != cin:
            layers.append(ConvNormActivation(cin, expanded, 1, activation=act, **norm))
        layers.append(ConvNormActivation(expanded, expanded, kernel, stride, groups=expanded, activation=act, **norm))
        if use_se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4), nn.ReLU, nn.Hardsigmoid))
        layers.append(ConvNormActivation(expanded, cout, 1, **norm))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        y = self.block(x)
        return y + x if self.use_res_connect else y


def mobilenet_v3_small(num_classes=1000, in_channels=3, dropout=0.2):
    setting = [(16, 3, 16, 16, True, False, 2), (16, 3, 72, 24, False, False, 2), (24, 3, 88, 24, False, False, 1),
               (24, 5, 96, 40, True, True, 2), (40, 5, 240, 40, True, True, 1), (40, 5, 240, 40, True, True, 1),
               (40, 5, 120, 48, True, True, 1), (48, 5, 144, 48, True, True, 1), (48, 5, 288, 96, True, True, 2),
               (96, 5, 576, 96, True, True, 1), (96, 5, 576, 96, True, True, 1)]
    layers = [ConvNormActivation(in_channels, 16, 3, 2, activation=nn.Hardswish, eps=1e-3, momentum=0.01)]
    layers += [InvertedResidual(*s) for s in setting]
    layers.append(ConvNormActivation(96, 576, 1, activation=nn.Hardswish, eps=1e-3, momentum=0.01))
    model = nn.Module()
    model.features = nn.Sequential(*layers)
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(), nn.Dropout(dropout),
                                     nn.Linear(1024, num_classes))
    return _Classifier(model)


# ---- DenseNet-121 ----

class DenseLayer(nn.Module):
    def __init__(self, cin, growth=32, bn_size=4):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

    def forward(self, features):
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.ModuleDict):
    def __init__(self, layers, cin, growth=32):
        super().__init__()
        for i in range(layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * growth, growth))

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


def densenet121(num_classes=1000, in_channels=3, small_input=False):
    stem = ([("conv0", nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False))] if small_input else
            [("conv0", nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False))])
    stem += [("norm0", nn.BatchNorm2d(64)), ("relu0", nn.ReLU())]
    if not small_input:
        stem.append(("pool0", nn.MaxPool2d(3, 2, 1)))
    features = nn.Sequential(OrderedDict(stem))
    channels = 64
    for i, layers in enumerate((6, 12, 24, 16)):
        features.add_module(f"denseblock{i + 1}", DenseBlock(layers, channels))
        channels += layers * 32
        if i != 3:
            features.add_module(f"transition{i + 1}", nn.Sequential(OrderedDict([
                ("norm", nn.BatchNorm2d(channels)), ("relu", nn.ReLU()),
                ("conv", nn.Conv2d(channels, channels // 2, 1, bias=False)), ("pool", nn.AvgPool2d(2, 2))])))
            channels //= 2
    features.add_module("norm5", nn.BatchNorm2d(channels))
    model = nn.Module()
    model.features = features
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Linear(channels, num_classes)
    return _Classifier(model, final_relu=True)


# ---- VGG-16 ----

def vgg16(num_classes=1000, in_channels=3, batch_norm=False, dropout=0.5):
    layers, channels = [], in_channels
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers.append(nn.Conv2d(channels, v, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU())
        channels = v
    model = nn.Module()
    model.features = nn.Sequential(*layers)
    model.avgpool = nn.AdaptiveAvgPool2d(7)
    model.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(4096, num_classes))
    return _Classifier(model)


def vgg16_bn(**kw):
    return vgg16(batch_norm=True, **kw)


BUILDERS = {
    "resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "efficientnet_b0": efficientnet_b0,
    "mobilenet_v3_small": mobilenet_v3_small, "densenet121": densenet121, "vgg16": vgg16, "vgg16_bn": vgg16_bn,
}
