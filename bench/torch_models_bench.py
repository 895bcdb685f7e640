"""PyTorch twins of the zoo architectures the training benchmarks time (bench/torch_train.py,
bench/torch_fashion.py, bench/torch_predict.py). resnet18 and efficientnet_b0 come from
tests/torch_models.py (the plain-torch.nn rebuilds of torchvision the model tests check
trugrade against), unet and unet_se from tests/torch_seg_models.py (the U-Net the
segmentation parity tests load trugrade's weights into), both imported by path; smallcnn
and fashioncnn are written here after csrc/models/small.c. Not part of the product:
trugrade never imports this."""
import importlib.util
from pathlib import Path

from torch import nn

_TESTS = Path(__file__).resolve().parents[1] / "tests"
SEGMENTATION = ("unet", "unet_se")


def _load(filename):
    spec = importlib.util.spec_from_file_location(f"trugrade_bench_{filename[:-3]}", _TESTS / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _test_models():
    return _load("torch_models.py")


def smallcnn(num_classes=10, in_channels=1, input_size=28):
    """csrc/models/small.c tg_arch_smallcnn for 28x28: conv3x3(32)-relu-pool-conv3x3(64)-relu-pool-
    flatten-linear(128)-relu-linear (no dropout: trugrade's default)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * (input_size // 4) ** 2, 128), nn.ReLU(), nn.Linear(128, num_classes))


def fashioncnn(num_classes=10, in_channels=1, input_size=28, dropout=0.3):
    """csrc/models/small.c tg_arch_fashioncnn: two conv3x3-BN-ReLU per stage (32, then 64
    channels), max-pool after each stage, then linear 256 - relu - dropout - linear."""
    layers = []
    cin = in_channels
    for width in (32, 64):
        for _ in range(2):
            layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            cin = width
        layers.append(nn.MaxPool2d(2))
    model = nn.Sequential()
    model.features = nn.Sequential(*layers)
    model.flatten = nn.Flatten()
    model.classifier = nn.Sequential(nn.Linear(64 * (input_size // 4) ** 2, 256), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(256, num_classes))
    return model


def build(arch, num_classes, in_channels, input_size):
    """The PyTorch model matching trugrade.models.create(arch, ...) with default options."""
    if arch == "smallcnn":
        return smallcnn(num_classes, in_channels, input_size)
    if arch == "fashioncnn":
        return fashioncnn(num_classes, in_channels, input_size)
    if arch in SEGMENTATION:  # trugrade's defaults: transposed-conv upsampling; dropout 0.2 for unet_se only
        return _load("torch_seg_models.py").UNet(in_channels, num_classes, se=arch == "unet_se")
    zoo = _test_models()
    if arch.startswith("resnet"):  # trugrade's small_input auto: 3x3 stride-1 stem without max-pool up to 64 px
        return zoo.BUILDERS[arch](num_classes=num_classes, in_channels=in_channels, small_input=input_size <= 64)
    if arch in zoo.BUILDERS:
        return zoo.BUILDERS[arch](num_classes=num_classes, in_channels=in_channels)
    raise SystemExit(f"bench/torch_models_bench.py: no PyTorch twin for '{arch}'; twins: smallcnn, fashioncnn, "
                     f"{', '.join(sorted(zoo.BUILDERS))}, {', '.join(SEGMENTATION)}")
