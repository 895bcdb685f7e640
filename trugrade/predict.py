"""Loading a trained model and predicting on raw images.

    model = trugrade.load_model("runs/fm/checkpoints/best.safetensors")
    probabilities = model.predict(images)   # (N, H, W), (N, H, W, C) or (N, C, H, W), any size

The model's own resizing and normalisation (stored in the checkpoint) are applied."""
import json
import os

import numpy as np

from . import models, safetensors
from .errors import ShapeError, TrugradeValueError


class LoadedModel:
    """A model with its classes, input size and normalisation, ready to predict."""

    def __init__(self, model, metadata, path):
        self.model = model
        self.path = path
        self.arch = metadata["arch"]
        self.classes = metadata["classes"]
        self.input_size = int(metadata["input_size"])
        self.in_channels = int(metadata["in_channels"])
        self.mean = np.asarray(metadata["normalization"]["mean"], np.float32)
        self.std = np.asarray(metadata["normalization"]["std"], np.float32)
        self.metadata = metadata

    def _prepare(self, images):
        images = np.asarray(images)
        if images.ndim == 2:
            images = images[None]
        if images.ndim == 3:
            images = images[:, None] if self.in_channels == 1 or images.shape[-1] not in (1, 3, 4) else \
                np.moveaxis(images, -1, 1)
        elif images.ndim == 4 and images.shape[1] != self.in_channels and images.shape[-1] == self.in_channels:
            images = np.moveaxis(images, -1, 1)
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise ShapeError(f"predict: {self.arch} takes {self.in_channels}-channel images as (N, H, W), (N, H, W, C) "
                             f"or (N, C, H, W); got shape {np.asarray(images).shape}")
        scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(images.dtype, 1.0)
        size = self.input_size
        if images.shape[2:] != (size, size):
            from .augment import Pipeline
            resize = Pipeline([{"name": "resize", "size": size}])
            images = np.stack([resize(np.ascontiguousarray(im))["image"] for im in images])
        x = images.astype(np.float32) / scale
        x = (x - self.mean[None, :, None, None]) / self.std[None, :, None, None]
        return np.ascontiguousarray(x, dtype=np.float32)

    def predict(self, images, batch_size=64):
        """Class probabilities (N, classes) for raw images of the file's own type."""
        x = self._prepare(images)
        out = []
        for start in range(0, len(x), batch_size):
            logits = self.model.forward(x[start:start + batch_size]).astype(np.float64)
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            out.append(p / p.sum(axis=1, keepdims=True))
        return np.concatenate(out).astype(np.float32)

    def __repr__(self):
        return f"<trugrade model {self.arch} from {self.path}: {len(self.classes)} classes, input {self.input_size}>"


def load_model(path):
    """A checkpoint (.safetensors written by trugrade.train) or a registry package (.tgpkg)."""
    path = os.fspath(path)
    if path.endswith(".tgpkg"):
        from .registry import Registry
        raise TrugradeValueError(f"{path}: import the package into a registry first (trugrade registry import), then "
                                 f"load it with trugrade.registry.load_active or Registry.load; {Registry.__name__}")
    if os.path.isdir(path):
        path = os.path.join(path, "checkpoints", "best.safetensors") if os.path.exists(
            os.path.join(path, "checkpoints", "best.safetensors")) else os.path.join(path, "checkpoints",
                                                                                   "last.safetensors")
    tensors, metadata = safetensors.load(path)
    for key in ("classes", "normalization", "config"):
        if key in metadata:
            metadata[key] = json.loads(metadata[key])
    missing = [k for k in ("arch", "num_classes", "in_channels", "input_size", "classes", "normalization")
               if k not in metadata]
    if missing:
        raise TrugradeValueError(f"{path}: not a trugrade checkpoint (its metadata lacks {missing}); load plain "
                                 "weights with trugrade.models.create(...).load_state_dict(path)")
    model = models.create(metadata["arch"], num_classes=int(metadata["num_classes"]),
                          in_channels=int(metadata["in_channels"]), input_size=int(metadata["input_size"]))
    model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("trainer.")})
    return LoadedModel(model, metadata, path)
