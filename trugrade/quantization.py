"""int8 post-training static quantization: trugrade's own int8 inference path, and the
model a QDQ ONNX export writes.

    model = trugrade.load_model("runs/fm")                       # or trugrade.models.create(...)
    qmodel = trugrade.quantize(model, "/usr/share/datasets/fashion-mnist")   # or an array of images
    qmodel.predict(images)                                      # as model.predict, in int8
    trugrade.export_onnx(qmodel, "fm-int8.onnx")                # QDQ ONNX (opset 17)

What happens (C: csrc/models/quantize.c, csrc/ops/quantized.c, csrc/ops/qgemm.c):
- calibration: the float model runs (eval mode) on the calibration images (at most `limit`,
  chosen at random with `seed`), and the range [min, max] of the float input of every
  conv2d and 2-D linear is recorded;
- each such layer becomes an int8 layer: its input quantized per tensor to uint8 with
  scale = (max - min) / 255 over the range widened to include 0 (zero point so that 0 is
  exact), its weights quantized symmetrically per output channel to int8 in [-127, 127]
  (a batchnorm right after a conv is folded into it first), uint8 x int8 products
  accumulated in int32 (AVX-512 VNNI where the CPU has it) and the result dequantized to
  float32 with the bias. Every other op (relu, pooling, softmax, ...) stays float32.
NOTE: the activation ranges are plain min/max over the calibration set. Percentile
clipping trades outlier error for resolution; for the ReLU CNNs of the zoo min/max
over a few hundred images loses well under a point of accuracy (trugrade.bench int8
measures it), so the simpler, reproducible choice is kept.

A quantized model is for inference and export: it has no gradients.

Calibration images: an array (raw images of the checkpoint's own type for a model of
trugrade.load_model; float32 (N, C, H, W) already normalised for a trugrade.models.Model),
or a path: a .npy file, an IDX file (.gz or not), a folder with MNIST-style IDX files
(train-images-idx3-ubyte[.gz] is used), or a folder of image files (PNG, JPEG, ...).
"""
import copy
import glob
import os

import numpy as np

from . import _C, models
from .errors import TrugradeValueError

__all__ = ["calibration_images", "is_quantized", "quantize"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".npy")


def _pick(images, limit, seed):
    images = np.asarray(images)
    if limit and len(images) > limit:
        order = np.sort(np.random.default_rng(seed).permutation(len(images))[:limit])
        images = images[order]
    return images


def calibration_images(source, limit=512, seed=0):
    """Raw calibration images from an array or a path (see the module's docstring): at most
    `limit` of them, a random choice fixed by `seed`."""
    from .data import read_idx, read_image
    if not isinstance(source, (str, os.PathLike)):
        return _pick(source, limit, seed)
    path = os.fspath(source)
    if os.path.isdir(path):
        idx = sorted(glob.glob(os.path.join(path, "train-images-idx3-ubyte*")) +
                     glob.glob(os.path.join(path, "*images-idx3-ubyte*")))
        if idx:
            return _pick(np.asarray(read_idx(idx[0])), limit, seed)
        files = sorted(p for p in glob.glob(os.path.join(path, "**", "*"), recursive=True)
                       if p.lower().endswith(_IMAGE_SUFFIXES))
        if not files:
            raise TrugradeValueError(f"quantize: {path} holds no images (IDX files, or image files with suffixes "
                                     f"{', '.join(_IMAGE_SUFFIXES)}) to calibrate with")
        files = list(_pick(np.asarray(files), limit, seed))
        images = [np.asarray(read_image(p)) for p in files]
        shapes = {im.shape for im in images}
        if len(shapes) != 1:
            raise TrugradeValueError(f"quantize: the calibration images in {path} have different shapes "
                                     f"{sorted(shapes)[:3]}; give images of one size (or an array)")
        return np.stack(images)
    if path.endswith(".npy"):
        return _pick(np.load(path), limit, seed)
    if "idx" in os.path.basename(path) or "ubyte" in os.path.basename(path):
        return _pick(np.asarray(read_idx(path)), limit, seed)
    raise TrugradeValueError(f"quantize: calibration source {path} is not a folder, a .npy file or an IDX file")


def is_quantized(model):
    """True for a model returned by quantize (or a LoadedModel holding one)."""
    inner = getattr(model, "model", model)
    return getattr(inner, "quantized_layers", None) is not None


def _quantize_model(model, x, batch_size):
    if not (hasattr(model, "_c") and isinstance(model._c, _C.Model)):
        raise TrugradeValueError(f"quantize: expected a model of trugrade.models.create or trugrade.load_model, got "
                                 f"{type(model).__name__}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4 or len(x) == 0:
        raise TrugradeValueError(f"quantize: calibration input must be a non-empty float32 batch (N, C, H, W), got "
                                 f"shape {x.shape}")
    ranges = np.empty((model._c.node_count(), 2), np.float32)
    ranges[:, 0], ranges[:, 1] = np.inf, -np.inf
    for start in range(0, len(x), batch_size):
        model._c.calibrate(x[start:start + batch_size], ranges)
    quantized_c, layers = model._c.quantize(ranges)
    quantized = models.Model.__new__(models.Model)
    quantized._c = quantized_c
    quantized.arch = model.arch
    quantized.options = quantized_c.options
    quantized.quantized_layers = layers
    return quantized


def quantize(model, calib, limit=512, batch_size=128, seed=0):
    """The int8 copy of `model` (a trugrade.models.Model or a LoadedModel of
    trugrade.load_model; the original is unchanged), calibrated on `calib` (array or path,
    at most `limit` images). Returns the same kind of object: a LoadedModel's predict
    and a Model's forward work as before, in int8."""
    if is_quantized(model):
        raise TrugradeValueError("quantize: the model is already quantized")
    images = calibration_images(calib, limit, seed)
    if hasattr(model, "model") and hasattr(model, "_prepare"):   # a LoadedModel
        result = copy.copy(model)
        result.model = _quantize_model(model.model, model._prepare(images), batch_size)
        return result
    return _quantize_model(model, images, batch_size)
