"""The segmentation architectures of csrc/models (unet.c, deeplab.c, fpn.c) written in plain
PyTorch with the same parameter names, so state_dicts transfer both ways. A test oracle only.

The ResNet trunk mirrors torchvision's module tree (conv1, bn1, layer1.0.conv1, ...,
downsample.0/.1), the ASPP torchvision's ASPP (convs.i, project), the pyramid
torchvision.ops.FeaturePyramidNetwork (inner_blocks.i.0, layer_blocks.i.0); torchvision
itself is not required."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn_relu(cin, cout, kernel=3, dilation=1):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2 * dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


# ---------------- U-Net ----------------

class SqueezeExcitation(nn.Module):
    def __init__(self, channels, reduction=16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x):
        gate = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(gate))))


class Level(nn.Module):
    """conv1-bn1-relu-conv2-bn2-relu [-se] [-dropout]; decoder levels also have `up`."""

    def __init__(self, cin, cout, se=False, dropout=0.0, up_from=None, bilinear=False):
        super().__init__()
        if up_from is not None:
            self.bilinear = bilinear
            self.up = nn.Conv2d(up_from, up_from // 2, 1) if bilinear else nn.ConvTranspose2d(up_from, up_from // 2, 2, 2)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.se = SqueezeExcitation(cout) if se else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def upsample(self, x):
        if self.bilinear:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.up(x)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        if self.se is not None:
            x = self.se(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return x


class Head(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class UNet(nn.Module):
    def __init__(self, in_channels, num_classes, se=False, dropout=None, bilinear=False):
        super().__init__()
        p = (0.2 if se else 0.0) if dropout is None else dropout
        widths = [64, 128, 256, 512]
        cin = in_channels
        for i, w in enumerate(widths):
            setattr(self, f"enc{i + 1}", Level(cin, w, se=se, dropout=p))
            cin = w
        self.bottleneck = Level(512, 1024, se=se, dropout=p)
        for i in range(4):
            w = 512 >> i
            setattr(self, f"dec{i + 1}", Level(2 * w, w, se=se and i == 0, dropout=p, up_from=2 * w, bilinear=bilinear))
        self.head = Head(64) if se else None
        self.outc = nn.Conv2d(64, num_classes, 1)

    def forward(self, x):
        skips = []
        for i in range(4):
            x = getattr(self, f"enc{i + 1}")(x)
            skips.append(x)
            x = F.max_pool2d(x, 2, 2)
        x = self.bottleneck(x)
        for i in range(4):
            level = getattr(self, f"dec{i + 1}")
            x = level(torch.cat([skips[3 - i], level.upsample(x)], 1))
        if self.head is not None:
            x = self.head(x)
        return self.outc(x)


# ---------------- ResNet trunk (torchvision's names) ----------------

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or cin != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


ENCODERS = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet34": (BasicBlock, [3, 4, 6, 3]),
            "resnet50": (Bottleneck, [3, 4, 6, 3])}


class ResNetTrunk(nn.Module):
    """torchvision's ResNet without avgpool/fc; layer4 dilated (stride 1, dilation 2) when asked."""

    def __init__(self, name, in_channels, dilate_last=False):
        super().__init__()
        block, depths = ENCODERS[name]
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        self.channels = []
        for stage, depth in enumerate(depths):
            planes = 64 << stage
            dilated = dilate_last and stage == 3
            blocks = []
            for i in range(depth):
                stride = 2 if stage > 0 and i == 0 and not dilated else 1
                blocks.append(block(cin, planes, stride, 2 if dilated else 1))
                cin = planes * block.expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
            self.channels.append(cin)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        stages = []
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            stages.append(x)
        return stages


# ---------------- DeepLabV3+ ----------------

class ASPPPooling(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x):
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(self, cin, rates=(6, 12, 18), cout=256, dropout=0.5):
        super().__init__()
        self.convs = nn.ModuleList([conv_bn_relu(cin, cout, 1)] + [conv_bn_relu(cin, cout, 3, r) for r in rates] +
                                   [ASPPPooling(cin, cout)])
        self.project = nn.Sequential(nn.Conv2d(5 * cout, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                     nn.Dropout(dropout))

    def forward(self, x):
        return self.project(torch.cat([conv(x) for conv in self.convs], 1))


class Decoder(nn.Module):
    def __init__(self, low_channels):
        super().__init__()
        self.low_level = conv_bn_relu(low_channels, 48, 1)
        self.fuse = nn.Sequential(*conv_bn_relu(256 + 48, 256), *conv_bn_relu(256, 256))


class DeepLabV3Plus(nn.Module):
    def __init__(self, in_channels, num_classes, encoder="resnet34", dropout=0.5):
        super().__init__()
        self.backbone = ResNetTrunk(encoder, in_channels, dilate_last=True)
        self.aspp = ASPP(self.backbone.channels[3], dropout=dropout)
        self.decoder = Decoder(self.backbone.channels[0])
        self.classifier = nn.Conv2d(256, num_classes, 1)

    def forward(self, x):
        stages = self.backbone(x)
        high = self.aspp(stages[3])
        low = self.decoder.low_level(stages[0])
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = self.classifier(self.decoder.fuse(torch.cat([high, low], 1)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


# ---------------- FPN ----------------

class FeaturePyramid(nn.Module):
    def __init__(self, in_channels_list, channels=256):
        super().__init__()
        self.inner_blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(c, channels, 1)) for c in in_channels_list])
        self.layer_blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1))
                                           for _ in in_channels_list])

    def forward(self, stages):
        last = self.inner_blocks[-1](stages[-1])
        results = [self.layer_blocks[-1](last)]
        for i in range(len(stages) - 2, -1, -1):
            lateral = self.inner_blocks[i](stages[i])
            last = lateral + F.interpolate(last, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, self.layer_blocks[i](last))
        return results


class FPNHead(nn.Module):
    def __init__(self, num_classes, channels=256, head_channels=128, dropout=0.0):
        super().__init__()
        self.seg_blocks = nn.ModuleList()
        for level in range(4):
            blocks = nn.ModuleList()
            for j in range(max(1, level)):
                blocks.append(nn.Sequential(nn.Conv2d(channels if j == 0 else head_channels, head_channels, 3,
                                                      padding=1, bias=False),
                                            nn.BatchNorm2d(head_channels), nn.ReLU()))
            self.seg_blocks.append(blocks)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.classifier = nn.Conv2d(head_channels, num_classes, 1)

    def forward(self, pyramid):
        merged = 0
        for level, blocks in enumerate(self.seg_blocks):
            y = pyramid[level]
            for block in blocks:
                y = block(y)
                if level > 0:
                    y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
            merged = merged + y
        if self.dropout is not None:
            merged = self.dropout(merged)
        return self.classifier(merged)


class FPN(nn.Module):
    def __init__(self, in_channels, num_classes, encoder="resnet34", dropout=0.0):
        super().__init__()
        self.backbone = ResNetTrunk(encoder, in_channels)
        self.fpn = FeaturePyramid(self.backbone.channels)
        self.head = FPNHead(num_classes, dropout=dropout)

    def forward(self, x):
        y = self.head(self.fpn(self.backbone(x)))
        return F.interpolate(y, scale_factor=4, mode="bilinear", align_corners=False)


# ---------------- the combined loss ----------------

def dice_loss(logits, target, smooth=1.0):
    classes = logits.shape[1]
    p = torch.softmax(logits, 1)
    onehot = F.one_hot(target, classes).movedim(-1, 1).to(logits.dtype)
    dims = [0] + list(range(2, logits.ndim))
    inter = (p * onehot).sum(dims)
    return 1 - ((2 * inter + smooth) / (p.sum(dims) + onehot.sum(dims) + smooth)).mean()


def softmax_focal_loss(logits, target, gamma=2.0, alpha=None):
    """mean of -a_y (1 - p_y)^gamma log p_y; a_y = alpha for y != 0, 1 - alpha for y = 0 (None: 1)."""
    log_p = torch.log_softmax(logits, 1).gather(1, target.unsqueeze(1)).squeeze(1)
    loss = -((1 - log_p.exp()) ** gamma) * log_p
    if alpha is not None:
        loss = loss * torch.where(target == 0, 1.0 - alpha, alpha).to(loss.dtype)
    return loss.mean()


def combined_loss(logits, target, ce=1.0, dice=0.0, focal=0.0, gamma=2.0, class_weights=None, alpha=None,
                  smooth=1.0):
    """ce * cross_entropy(weight=class_weights) + dice * dice_loss(smooth) + focal * softmax_focal_loss(gamma, alpha)."""
    loss = 0
    if ce:
        loss = loss + ce * F.cross_entropy(logits, target, weight=class_weights)
    if dice:
        loss = loss + dice * dice_loss(logits, target, smooth)
    if focal:
        loss = loss + focal * softmax_focal_loss(logits, target, gamma, alpha)
    return loss
