"""trugrade.models: the architecture zoo (built in C) as Python objects.

    model = trugrade.models.create("resnet18", num_classes=10, in_channels=1, input_size=28)
    logits = model.forward(x)                       # x: float32 (N, C, H, W)
    loss, grads = model.loss_and_grads(x, y)        # y: int labels (N,)
    model.load_state_dict("weights.safetensors")    # torchvision names
    model.freeze(["stem", "layer1"])                # before creating the optimizer

Parameter names, shapes and counts are torchvision's (resnet18/34/50, efficientnet_b0,
densenet121, vgg16, vgg16_bn, mobilenet_v3_small), so torchvision checkpoints saved as
safetensors load with load_state_dict.

The head: num_classes sets the last layer's output size, and that layer keeps
torchvision's name (fc, classifier, classifier.1, classifier.3 or classifier.6).
To fine-tune pretrained weights on other classes, load with strict=False after
dropping the head's two tensors from the checkpoint (or load them and let
load_state_dict report the shape mismatch); in_channels other than 3 changes the
first conv's shape in the same way.

Segmentation architectures (unet, unet_se, deeplabv3plus, fpn) return logits (N, classes, H, W)
and train on int masks (N, H, W), with a configurable loss:

    model = trugrade.models.create("unet_se", num_classes=2, in_channels=11, input_size=256,
                                   loss={"dice": 0.4, "focal": 0.4, "wce": 0.2},
                                   class_weights=class_weights_from_masks(masks, 2))
    loss, grads = model.loss_and_grads(x, masks)

deeplabv3plus and fpn take encoder="resnet18" | "resnet34" (default) | "resnet50"; their encoder
parameters are torchvision's ResNet names under "backbone." (see load_backbone).
"""
import os

import numpy as np

from . import _C
from . import safetensors
from .errors import ShapeError, TrugradeValueError


def architectures():
    """{name: one-line summary} of every architecture in the zoo."""
    return _C.architectures()


class Model:
    """A zoo architecture: its graph, parameters (torchvision names) and buffers."""

    def __init__(self, arch, **options):
        self._c = _C.Model(arch, **options)
        self.arch = arch
        self.options = self._c.options

    def forward(self, x, train=False):
        """Logits for a float32 batch (N, C, H, W)."""
        return self._c.forward(_batch(x), train=train).numpy()

    __call__ = forward

    def loss_and_grads(self, x, y):
        """(loss, {parameter name: gradient}) of one training-mode step on (x, y): y is int
        labels (N,) for a classifier, int masks (N, H, W) for a segmentation model."""
        y = np.asarray(y)
        if y.dtype.kind not in "iub":
            raise TrugradeValueError(f"{self.arch}: targets must be integer class indices, got dtype {y.dtype}")
        loss = self._c.step(_batch(x), np.ascontiguousarray(y, dtype=np.int64))
        return loss, {k: v.numpy() for k, v in self._c.tensors(grads=True).items()}

    def state_dict(self):
        """{name: numpy array} of parameters and buffers, viewing the model's memory."""
        return {k: v.numpy() for k, v in self._c.tensors().items()}

    def load_state_dict(self, source, strict=True):
        """Copies weights from {name: array} or a safetensors path. With strict, a missing
        or unexpected name is an error listing them; a shape mismatch always is."""
        if isinstance(source, (str, os.PathLike)):
            source, _ = safetensors.load(source)
        own = self._c.tensors()
        missing = sorted(set(own) - set(source))
        unexpected = sorted(set(source) - set(own))
        if strict and (missing or unexpected):
            raise TrugradeValueError(f"load_state_dict for {self.arch}: missing {missing[:10]}"
                                     f"{'...' if len(missing) > 10 else ''}, unexpected {unexpected[:10]}"
                                     f"{'...' if len(unexpected) > 10 else ''}")
        for name in sorted(set(own) & set(source)):
            target = own[name].numpy()
            value = np.asarray(source[name])
            if value.shape != target.shape:
                raise ShapeError(f"load_state_dict: '{name}' has shape {value.shape}, the model needs {target.shape}")
            target[...] = value.astype(target.dtype, copy=False)

    def freeze(self, patterns):
        """Freezes the parameters each pattern matches: an fnmatch glob over names
        ("layer1.*"), a module or stage prefix ("layer1", "features.3", "classifier"),
        or "stem". Frozen parameters get no gradient (zeros in loss_and_grads) and a
        BatchNorm whose weight and bias are frozen runs in eval mode during training
        too (its running statistics stay unchanged). Create the optimizer after
        freezing: it updates the parameters trainable when it is made.
        Returns the number of parameters matched; a pattern that matches nothing is
        an error."""
        return self._set_frozen(patterns, True)

    def unfreeze(self, patterns="*"):
        """Undoes freeze for the parameters the patterns match (all by default)."""
        return self._set_frozen(patterns, False)

    def frozen(self):
        """Names of the frozen parameters, in model order."""
        return [name for name, trainable in self._c.requires_grad().items() if not trainable]

    def _set_frozen(self, patterns, frozen):
        if isinstance(patterns, (str, os.PathLike)):
            patterns = [patterns]
        total = 0
        for pattern in patterns:
            matched = self._c.freeze(str(pattern), frozen=frozen)
            if matched == 0:
                stages = sorted({name.split(".")[0] if not name.startswith("features.") else
                                 ".".join(name.split(".")[:2]) for name in self._c.requires_grad()})
                raise TrugradeValueError(f"freeze: '{pattern}' matches no parameter of {self.arch}; use a name glob "
                                         f"('layer1.*'), 'stem' or a stage: {', '.join(stages)}")
            total += matched
        return total

    def load_backbone(self, source):
        """Loads a torchvision ResNet state_dict ({name: array} or a safetensors path) into the
        encoder of deeplabv3plus / fpn: every name gets the "backbone." prefix, fc.* is skipped;
        returns the list of encoder names that were not in `source`."""
        if isinstance(source, (str, os.PathLike)):
            source, _ = safetensors.load(source)
        own = self._c.tensors()
        prefixed = {f"backbone.{k}": v for k, v in source.items() if not k.startswith("fc.")}
        unexpected = sorted(set(prefixed) - set(own))
        if unexpected:
            raise TrugradeValueError(f"load_backbone for {self.arch}: names the encoder lacks: {unexpected[:10]}")
        self.load_state_dict(prefixed, strict=False)
        return sorted(k for k in own if k.startswith("backbone.") and k not in prefixed)

    def parameter_count(self):
        return self._c.parameter_count()

    def parameter_breakdown(self, depth=1):
        """{name prefix: parameter count} over the first `depth` parts of the parameter
        names ("enc1", "bottleneck", "dec1.se" ...), in model order; buffers (BatchNorm
        running statistics, loss weights) are not parameters. Sums to parameter_count()."""
        out, tensors = {}, self._c.tensors()
        for name in self._c.requires_grad():
            prefix = ".".join(name.split(".")[:depth])
            out[prefix] = out.get(prefix, 0) + int(np.prod(tensors[name].numpy().shape))
        return out

    def memory(self, batch=0, training=True):
        """Planned bytes of one step at this batch size, known before running it."""
        return self._c.memory(batch=batch, training=training)

    def __repr__(self):
        return f"trugrade.models.Model({self.arch!r}, {self.parameter_count():,} parameters)"


def _batch(x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise ShapeError(f"model input must be (N, C, H, W), got shape {x.shape}")
    return x


_UPSAMPLE_MODES = {"transpose": 0, "bilinear": 1}
_LOSS_TERMS = {"ce": "loss_ce", "wce": "loss_ce", "dice": "loss_dice", "focal": "loss_focal"}
_LOSS_SETTINGS = {"gamma": "focal_gamma", "alpha": "focal_alpha", "smooth": "dice_smooth"}


def create(name, loss=None, class_weights=None, upsample="transpose", **options):
    """Creates an architecture of the zoo: num_classes, in_channels (the first conv
    adapts: 1 for grayscale, 11 for multispectral), input_size, dropout (the head's;
    -1 keeps the architecture's own: 0.2 EfficientNet/MobileNetV3, 0.5 VGG, none for
    ResNet/DenseNet), small_input (ResNet and DenseNet: 3x3 stride-1 stem without
    max-pool; -1: when input_size <= 64), drop_path (EfficientNet stochastic depth,
    training only; -1: 0.2), seed; for segmentation also
    encoder (deeplabv3plus, fpn), upsample ("transpose" or "bilinear", unet/unet_se),
    loss: {"dice": w, "focal": w, "wce" (or "ce"): w, "gamma": focal gamma (default 2),
    "alpha": focal alpha (the foreground classes' factor, 1 - alpha for class 0; None or
    absent: no alpha), "smooth": dice smoothing (default 1)}, the weighted sum of dice_loss,
    softmax_focal_loss and cross_entropy (default: cross-entropy alone), class_weights:
    one per class for the cross-entropy term, and label_smoothing (of the cross-entropy
    term, torch's cross_entropy(label_smoothing=...))."""
    if upsample not in _UPSAMPLE_MODES:
        raise TrugradeValueError(f"upsample must be one of {sorted(_UPSAMPLE_MODES)}, got {upsample!r}")
    options["upsample"] = _UPSAMPLE_MODES[upsample]
    if loss is not None:
        loss = dict(loss)
        unknown = sorted(set(loss) - set(_LOSS_TERMS) - set(_LOSS_SETTINGS))
        if unknown or ("ce" in loss and "wce" in loss):
            raise TrugradeValueError(f"loss takes the terms dice, focal, wce (or ce) and the settings gamma, alpha "
                                     f"and smooth, got {sorted(loss)}")
        for key, option in _LOSS_SETTINGS.items():
            value = loss.pop(key, None)
            if value is not None:
                options[option] = float(value)
        options.update(loss_ce=0.0, loss_dice=0.0, loss_focal=0.0)
        for term, weight in loss.items():
            options[_LOSS_TERMS[term]] = float(weight)
    if class_weights is not None:
        options["class_weights"] = [float(w) for w in np.asarray(class_weights, dtype=np.float64).reshape(-1)]
    return Model(name, **options)


def class_weights_from_masks(masks, num_classes):
    """Inverse pixel frequency per class, normalised so the weights sum to num_classes
    (w_c = (1 / f_c) / sum_k (1 / f_k) * C; a class with no pixel counts as one pixel).
    A 1:13 foreground ratio gives about [0.14, 1.86]."""
    counts = np.zeros(num_classes, np.float64)
    for mask in masks if isinstance(masks, (list, tuple)) else [masks]:
        mask = np.asarray(mask).reshape(-1)
        mask = mask[(mask >= 0) & (mask < num_classes)]
        counts += np.bincount(mask.astype(np.int64), minlength=num_classes)[:num_classes]
    inverse = 1.0 / np.maximum(counts, 1.0)
    return (inverse / inverse.sum() * num_classes).astype(np.float32)
