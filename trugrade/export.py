"""Exporting a model for deployment: ONNX (opset 17, written by the C core) and plain
safetensors with torchvision's parameter names.

    import trugrade
    model = trugrade.load_model("runs/fm/checkpoints/best.safetensors")   # or trugrade.models.create(...)
    trugrade.export_onnx(model, "fm.onnx")
    trugrade.export.export_onnx(model, "fm16.onnx", float16=True)        # float16 weights and compute
    trugrade.export.export_safetensors(model, "fm.safetensors")          # torchvision's state_dict names

    trugrade export runs/fm --format onnx --out fm.onnx                  # the same from the shell

The ONNX graph is the model in eval mode (dropout and stochastic depth are identities,
batchnorm uses its running statistics): input "input" float32 [batch, C, H, W] with a
dynamic batch, already resized and normalised; output "logits" ([batch, classes], or
[batch, classes, H, W] for segmentation). Initializers carry the parameters' own names.
metadata_props: arch, input_size, in_channels, num_classes, and for a trained
checkpoint classes (a JSON list) and normalization (JSON {"mean": [...], "std": [...]}).
A float16 export keeps float32 input and output (Cast nodes at both ends).

Running it:
    onnxruntime:  onnxruntime.InferenceSession("fm.onnx").run(None, {"input": x})[0]
    TensorRT:     trtexec --onnx=model.onnx --fp16 --saveEngine=model.plan \\
                      --minShapes=input:1x3x224x224 --optShapes=input:8x3x224x224 --maxShapes=input:32x3x224x224
                  (use the model's own channels and input_size; --fp16 lets TensorRT pick
                  float16 kernels for a float32 file, the usual way to get float16 speed)

The safetensors file loads into the matching torchvision model:
    from safetensors.torch import load_file
    model.load_state_dict(load_file("fm.safetensors"))
"""
import json
import os

import numpy as np

from . import _C, safetensors
from .errors import TrugradeValueError


def _parts(model):
    """(trugrade.models.Model, metadata dict of str) of a Model or a LoadedModel."""
    if hasattr(model, "model") and hasattr(model, "classes"):   # a LoadedModel of trugrade.load_model
        inner = model.model
        meta = {"classes": json.dumps(list(model.classes)),
                "normalization": json.dumps({"mean": [float(v) for v in np.ravel(model.mean)],
                                             "std": [float(v) for v in np.ravel(model.std)]})}
    elif hasattr(model, "_c") and isinstance(model._c, _C.Model):
        inner, meta = model, {}
    else:
        raise TrugradeValueError(f"export: expected a model of trugrade.models.create or trugrade.load_model, got "
                                 f"{type(model).__name__}")
    options = inner._c.options
    meta = {"arch": inner.arch, "input_size": str(options["input_size"]), "in_channels": str(options["in_channels"]),
            "num_classes": str(options["num_classes"]), **meta}
    return inner, meta


def export_onnx(model, path, metadata=None, float16=False):
    """Writes `model` (trugrade.models.create or trugrade.load_model) as an ONNX opset-17
    file at `path`. metadata: extra {key: value} for metadata_props (non-str values are
    written as JSON). float16: float16 weights and compute, float32 input and output.
    An op with no ONNX mapping raises UnsupportedError naming it."""
    inner, meta = _parts(model)
    for key, value in (metadata or {}).items():
        meta[str(key)] = value if isinstance(value, str) else json.dumps(value)
    _C.export_onnx(inner._c, os.fspath(path), meta, float16=bool(float16))


def export_safetensors(model, path):
    """Writes the parameters and buffers under torchvision's names (no trainer state, no
    loss weights) with metadata format "pt" and the arch, loadable by PyTorch's
    safetensors.torch's load_file and a torchvision model's load_state_dict."""
    inner, meta = _parts(model)
    tensors = {name: np.array(value) for name, value in inner.state_dict().items()
               if not name.startswith(("trainer.", "loss."))}
    safetensors.save(path, tensors, {"format": "pt", **meta})
