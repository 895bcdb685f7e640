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
        """(loss, {parameter name: gradient}) of one training-mode step on (x, y)."""
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

    def parameter_count(self):
        return self._c.parameter_count()

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


def create(name, **options):
    """Creates an architecture of the zoo: num_classes, in_channels (the first conv
    adapts: 1 for grayscale, 11 for multispectral), input_size, dropout (the head's;
    -1 keeps the architecture's own: 0.2 EfficientNet/MobileNetV3, 0.5 VGG, none for
    ResNet/DenseNet), small_input (ResNet and DenseNet: 3x3 stride-1 stem without
    max-pool; -1: when input_size <= 64), drop_path (EfficientNet stochastic depth,
    training only; -1: 0.2), seed."""
    return Model(name, **options)
