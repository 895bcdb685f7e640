"""trugrade.models: the architecture zoo (built in C) as Python objects.

    model = trugrade.models.create("resnet18", num_classes=10, in_channels=1, input_size=28)
    logits = model.forward(x)                       # x: float32 (N, C, H, W)
    loss, grads = model.loss_and_grads(x, y)        # y: int labels (N,)
    model.load_state_dict("weights.safetensors")    # torchvision names
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
    """Creates an architecture of the zoo: num_classes, in_channels, input_size,
    dropout, small_input (ResNet 3x3 stem, no max-pool), seed."""
    return Model(name, **options)
