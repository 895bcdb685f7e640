"""Exporting a model for deployment: ONNX (opset 17, written by the C core) and plain
safetensors with torchvision's parameter names.

    import trugrade
    model = trugrade.load_model("runs/fm/checkpoints/best.safetensors")   # or trugrade.models.create(...)
    trugrade.export_onnx(model, "fm.onnx")
    trugrade.export.export_onnx(model, "fm16.onnx", float16=True)        # float16 weights and compute
    trugrade.export.export_safetensors(model, "fm.safetensors")          # torchvision's state_dict names

    trugrade.export_onnx(model, "fm8.onnx", int8=True, calib="/usr/share/datasets/fashion-mnist")
    trugrade export runs/fm --format onnx --out fm.onnx                  # the same from the shell
    trugrade export fm-cnn:3 --format onnx --int8 --calib DIR --out fm8.onnx   # a registry version

The model to export is a run folder, a checkpoint, or a registry version: "name:version",
or "name" for its latest version (load_source; --registry DIR picks the registry folder).

The ONNX graph is the model in eval mode (dropout and stochastic depth are identities,
batchnorm uses its running statistics): input "input" float32 [batch, C, H, W] with a
dynamic batch, already resized and normalised; output "logits" ([batch, classes], or
[batch, classes, H, W] for segmentation). Initializers carry the parameters' own names.
metadata_props: arch, input_size, in_channels, num_classes, and for a trained
checkpoint classes (a JSON list) and normalization (JSON {"mean": [...], "std": [...]});
for a registry version also registry_version ("name:version") and sha256 (of its weights).
A float16 export keeps float32 input and output (Cast nodes at both ends).

int8 (post-training static quantization, trugrade.quantization): the model is calibrated
on `calib` and every conv and linear becomes QuantizeLinear -> DequantizeLinear on its
uint8 input, DequantizeLinear (axis 0) on its int8 per-channel weight, then Conv / Gemm
(the QDQ format); the other ops stay float32. A model already returned by
trugrade.quantize exports the same way without calib. metadata_props gets
quantization = {"format": "QDQ", "activations": "uint8 per tensor", "weights": "int8
symmetric per channel"}. onnxruntime runs it as is (its graph optimiser fuses the QDQ
pairs into integer kernels); TensorRT builds it with --int8:
    trtexec --onnx=fm8.onnx --int8 --saveEngine=fm8.plan --minShapes=input:1x1x28x28 \\
            --optShapes=input:64x1x28x28 --maxShapes=input:256x1x28x28

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
        for key in ("registry_version", "sha256"):   # a registry version (load_source)
            if key in getattr(model, "metadata", {}):
                meta[key] = str(model.metadata[key])
    elif hasattr(model, "_c") and isinstance(model._c, _C.Model):
        inner, meta = model, {}
    else:
        raise TrugradeValueError(f"export: expected a model of trugrade.models.create or trugrade.load_model, got "
                                 f"{type(model).__name__}")
    options = inner._c.options
    meta = {"arch": inner.arch, "input_size": str(options["input_size"]), "in_channels": str(options["in_channels"]),
            "num_classes": str(options["num_classes"]), **meta}
    return inner, meta


def export_onnx(model, path, metadata=None, float16=False, int8=False, calib=None, calib_limit=512):
    """Writes `model` (trugrade.models.create or trugrade.load_model) as an ONNX opset-17
    file at `path`. metadata: extra {key: value} for metadata_props (non-str values are
    written as JSON). float16: float16 weights and compute, float32 input and output.
    int8: a QDQ graph of the model quantized on `calib` (images: an array or a path, at
    most calib_limit of them; see trugrade.quantization), or of a model trugrade.quantize
    already returned. An op with no ONNX mapping raises UnsupportedError naming it."""
    from .quantization import is_quantized, quantize
    if int8 and float16:
        raise TrugradeValueError("export_onnx: int8 and float16 are exclusive; choose one")
    if int8 and not is_quantized(model):
        if calib is None:
            raise TrugradeValueError("export_onnx: int8 needs calibration images (calib=array or path), or a model "
                                     "returned by trugrade.quantize")
        model = quantize(model, calib, limit=calib_limit)
    inner, meta = _parts(model)
    if is_quantized(model):
        meta["quantization"] = json.dumps({"format": "QDQ", "activations": "uint8 per tensor",
                                           "weights": "int8 symmetric per channel",
                                           "layers": int(inner.quantized_layers)})
    for key, value in (metadata or {}).items():
        meta[str(key)] = value if isinstance(value, str) else json.dumps(value)
    _C.export_onnx(inner._c, os.fspath(path), meta, float16=bool(float16))


def load_source(ref, registry=None):
    """What `trugrade export` exports: a run folder or checkpoint path (trugrade.load_model),
    else a registry version "name:version" or "name" (its latest), from the registry folder
    `registry` (default: trugrade.registry.default_root()). The version's file is checked
    against its SHA-256 first. Returns a LoadedModel with the version's classes and
    normalisation."""
    from .errors import RegistryError
    from .predict import LoadedModel, load_model
    text = os.fspath(ref)
    if os.path.exists(text):
        return load_model(text)
    from .registry import Registry
    try:
        reg = Registry(registry)
        entry = reg._resolve(text)
    except RegistryError as exc:
        raise TrugradeValueError(f"export: '{text}' is neither a run folder or checkpoint file nor a registry version "
                                 f"(name:version or name): {exc}") from None
    model = reg.load(entry)
    channels = int(entry.in_channels)
    normalization = entry.normalization or {"mean": [0.0] * channels, "std": [1.0] * channels}
    metadata = {"arch": entry.architecture, "classes": list(entry.classes), "num_classes": entry.num_classes,
                "input_size": model.options["input_size"], "in_channels": channels, "normalization": normalization,
                "registry_version": entry.ref, "sha256": entry.sha256}
    if isinstance(entry.config, dict) and entry.config.get("task") == "segmentation":
        metadata["task"] = "segmentation"
    return LoadedModel(model, metadata, entry.path)


def export_safetensors(model, path):
    """Writes the parameters and buffers under torchvision's names (no trainer state, no
    loss weights) with metadata format "pt" and the arch, loadable by PyTorch's
    safetensors.torch's load_file and a torchvision model's load_state_dict."""
    inner, meta = _parts(model)
    tensors = {name: np.array(value) for name, value in inner.state_dict().items()
               if not name.startswith(("trainer.", "loss."))}
    safetensors.save(path, tensors, {"format": "pt", **meta})
