"""Loading a trained model and predicting on raw images.

    model = trugrade.load_model("runs/fm/checkpoints/best.safetensors")
    probabilities = model.predict(images)   # (N, H, W), (N, H, W, C) or (N, C, H, W), any size

The model's own resizing and normalisation (stored in the checkpoint) are applied.

Segmentation checkpoints (task "segmentation" in the checkpoint) predict per-pixel
probabilities instead, and predict_tiles writes a mask PNG and a probability map per file:

    model = trugrade.load_model("runs/debris/checkpoints/best.safetensors")
    probabilities = model.predict_masks(tiles)           # (N, classes, H, W)
    timings = trugrade.predict.predict_tiles(model, ["a.npy", "b.npy"], "out/")"""
import json
import os
import time

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
        self.task = metadata.get("task", "classification")

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

    def predict_masks(self, images, batch_size=8):
        """Per-pixel class probabilities (N, classes, H, W) of a segmentation model for raw tiles
        (N, C, H, W) or one tile (C, H, W) of the file's own type. Tiles whose sides are
        multiples of 32 run at their own size (fully convolutional: the pixel scale stays);
        others are resized to the model's input size and the probabilities mapped back to
        the tile's pixels (nearest)."""
        images = np.asarray(images)
        if images.ndim == 3 and images.shape[0] == self.in_channels:
            images = images[None]
        height, width = images.shape[-2:] if images.ndim == 4 and images.shape[1] == self.in_channels else (0, 0)
        native = height and height % 32 == 0 and width % 32 == 0
        if native:
            scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(images.dtype, 1.0)
            x = (images.astype(np.float32) / scale - self.mean[None, :, None, None]) / self.std[None, :, None, None]
            x = np.ascontiguousarray(x, dtype=np.float32)
        else:
            x = self._prepare(images)
        out = []
        for start in range(0, len(x), batch_size):
            logits = self.model.forward(x[start:start + batch_size]).astype(np.float32)
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            out.append(e / e.sum(axis=1, keepdims=True))
        probabilities = np.concatenate(out)
        if not native and height and (height, width) != probabilities.shape[-2:]:
            rows = (np.arange(height) * probabilities.shape[2] // height)
            cols = (np.arange(width) * probabilities.shape[3] // width)
            probabilities = probabilities[:, :, rows][:, :, :, cols]
        return np.ascontiguousarray(probabilities, dtype=np.float32)

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
    # a segmentation model trained with class weights keeps them as the buffer loss.class_weight
    weights = tensors.get("loss.class_weight")
    model = models.create(metadata["arch"], num_classes=int(metadata["num_classes"]),
                          in_channels=int(metadata["in_channels"]), input_size=int(metadata["input_size"]),
                          **({"class_weights": np.asarray(weights)} if weights is not None else {}))
    model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("trainer.")})
    return LoadedModel(model, metadata, path)


def predict_tiles(model, paths, out_dir, threshold=None, stream=None):
    """Predicts each tile file (PNG, JPEG, NPY, ...) with a segmentation model (a LoadedModel or a
    checkpoint path) and writes, per tile, out_dir/<stem>_mask.png (class indices, 8-bit gray)
    and out_dir/<stem>_prob.npy (float32: the foreground probability (H, W) for 2 classes, the
    class probabilities (classes, H, W) otherwise). threshold (2 classes only): foreground where
    its probability >= threshold (default: the most probable class). Prints a line per tile
    with its time to `stream` (a file, or None). Returns [{"path", "mask", "probabilities",
    "seconds", "foreground_fraction"}]."""
    from .data import read_image
    from .synthetic import write_png_gray
    if not isinstance(model, LoadedModel):
        model = load_model(model)
    if model.task != "segmentation":
        raise TrugradeValueError(f"predict_tiles: {model.path} is a {model.task} checkpoint; use predict() for "
                                 "class probabilities")
    binary = len(model.classes) == 2
    if threshold is not None and not binary:
        raise TrugradeValueError(f"predict_tiles: a threshold needs a 2-class model; {model.arch} has "
                                 f"{len(model.classes)} classes")
    os.makedirs(out_dir, exist_ok=True)
    results = []
    for path in paths:
        tile = np.asarray(read_image(path))
        started = time.perf_counter()
        probabilities = model.predict_masks(tile[None])[0]              # (classes, H, W)
        if binary and threshold is not None:
            mask = (probabilities[1] >= threshold).astype(np.uint8)
        else:
            mask = probabilities.argmax(0).astype(np.uint8)
        seconds = time.perf_counter() - started
        stem = os.path.splitext(os.path.basename(os.fspath(path)))[0]
        mask_path = os.path.join(out_dir, f"{stem}_mask.png")
        prob_path = os.path.join(out_dir, f"{stem}_prob.npy")
        write_png_gray(mask_path, mask)
        np.save(prob_path, probabilities[1] if binary else probabilities)
        row = {"path": os.fspath(path), "mask": mask_path, "probabilities": prob_path, "seconds": seconds,
               "foreground_fraction": float((mask > 0).mean())}
        results.append(row)
        if stream is not None:
            print(f"{path}: {mask.shape[1]}x{mask.shape[0]} -> {mask_path}, foreground {row['foreground_fraction']:.2%}, "
                  f"{seconds * 1000:.1f} ms ({1 / max(seconds, 1e-9):.2f} tiles/s)", file=stream)
    return results
