"""ONNX and safetensors export (trugrade/export.py, csrc/export/onnx.c and each op's
`onnx` mapping): every architecture of the zoo is exported, checked with
onnx.checker (full_check), run in onnxruntime at batch 2 and 3 (the batch is dynamic)
and compared with trugrade's own eval forward.

Tolerance: |onnxruntime - trugrade| <= 1e-4 * max(1, max |trugrade logits|), i.e. an
absolute 1e-4 for logits of order 1 and relative to the output's scale beyond (the
two engines sum in different orders). float16 exports: 2e-2 of that scale.
Biases, BatchNorm affine and running statistics are randomised first so that the
comparison sees more than the initialisation's ones and zeros (the weights keep their
own random initialisation).
"""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import torch_models
import trugrade
from trugrade import _C
from trugrade import safetensors as st
from trugrade.export import export_onnx, export_safetensors

SEGMENTATION = {"unet", "unet_se", "deeplabv3plus", "fpn"}
ARCHS = sorted(trugrade.models.architectures())


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for name, value in model.state_dict().items():
        if value.dtype != np.float32 or value.ndim != 1:
            continue
        if name.endswith("running_var"):
            value[...] = rng.uniform(0.5, 1.5, value.shape)
        elif name.endswith("running_mean") or name.endswith(".bias"):
            value[...] = rng.uniform(-0.1, 0.1, value.shape)
        else:
            value[...] = rng.uniform(0.8, 1.2, value.shape)


def _create(arch):
    if arch in SEGMENTATION:
        model = trugrade.models.create(arch, num_classes=3, input_size=64)
    else:
        model = trugrade.models.create(arch, num_classes=10, input_size=28 if arch == "fashioncnn" else 32,
                                       in_channels=1 if arch == "fashioncnn" else 3)
    _randomize(model)
    return model


def _session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _close(got, want, rtol):
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max())
    assert err <= rtol * scale, f"max |onnxruntime - trugrade| = {err:.3g}, allowed {rtol * scale:.3g}"


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_exports_and_matches(arch, tmp_path):
    model = _create(arch)
    path = tmp_path / f"{arch}.onnx"
    export_onnx(model, path, metadata={"note": "test"})

    onnx.checker.check_model(str(path), full_check=True)   # by path: no 500 MB re-serialisation for VGG
    proto = onnx.load(str(path))
    assert proto.ir_version == 8 and proto.producer_name == "trugrade"
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["arch"] == arch and meta["note"] == "test" and int(meta["input_size"]) == model.options["input_size"]
    state = model.state_dict()
    for init in proto.graph.initializer:
        if init.name in state:
            assert tuple(init.dims) == state[init.name].shape, init.name
    names = {init.name for init in proto.graph.initializer}
    assert {k for k in state if k.endswith(".weight")} <= names   # every weight is an initializer under its own name

    session = _session(path)
    size = model.options["input_size"]
    rng = np.random.default_rng(1)
    for batch in (2, 3):
        x = rng.standard_normal((batch, model.options["in_channels"], size, size)).astype(np.float32)
        want = model.forward(x)
        got = session.run(None, {"input": x})[0]
        assert got.shape == want.shape
        _close(got, want, 1e-4)
    path.unlink()   # VGG's files are 0.5 GB each


@pytest.mark.parametrize("arch", ["smallcnn", "resnet18", "mobilenet_v3_small", "unet_se"])
def test_float16_export_within_float16_tolerance(arch, tmp_path):
    model = _create(arch)
    path = tmp_path / f"{arch}16.onnx"
    export_onnx(model, path, float16=True)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert all(init.data_type in (onnx.TensorProto.FLOAT16, onnx.TensorProto.INT64) for init in proto.graph.initializer
               if init.name in model.state_dict())
    size = model.options["input_size"]
    x = np.random.default_rng(2).standard_normal((2, model.options["in_channels"], size, size)).astype(np.float32)
    got = _session(path).run(None, {"input": x})[0]
    assert got.dtype == np.float32
    _close(got, model.forward(x), 2e-2)


def test_op_without_mapping_fails_naming_it(tmp_path):
    graph = trugrade.Graph()
    x = graph.input("x", [2, 3, 4, 4])
    y = graph.op("relu", [x])
    total = graph.op("sum", [y], dim=[1])
    with pytest.raises(trugrade.UnsupportedError, match="op 'sum'.*no ONNX mapping"):
        _C.export_onnx(graph, str(tmp_path / "sum.onnx"), None, input=x, output=total)
    assert not (tmp_path / "sum.onnx").exists()
    relu_only = tmp_path / "relu.onnx"
    _C.export_onnx(graph, str(relu_only), None, input=x, output=y)
    onnx.checker.check_model(onnx.load(str(relu_only)), full_check=True)


def test_second_input_and_bad_arguments_are_refused(tmp_path):
    graph = trugrade.Graph()
    x = graph.input("x", [2, 3])
    target = graph.input("target", [2, 3])
    y = graph.op("sub", [x, target])
    with pytest.raises(trugrade.UnsupportedError, match="depends on the input 'target'"):
        _C.export_onnx(graph, str(tmp_path / "loss.onnx"), None, input=x, output=y)
    model = _create("smallcnn")
    with pytest.raises(trugrade.TrugradeValueError, match="export"):
        export_onnx(object(), tmp_path / "x.onnx")
    with pytest.raises(TypeError, match="metadata"):
        _C.export_onnx(model._c, str(tmp_path / "m.onnx"), {"k": 1})
    with pytest.raises(trugrade.TrugradeIOError):
        export_onnx(model, tmp_path / "missing_dir" / "m.onnx")
    _C.export_onnx(model, str(tmp_path / "wrapper.onnx"))   # the Python Model, not its ._c
    onnx.checker.check_model(str(tmp_path / "wrapper.onnx"), full_check=True)


def test_loaded_checkpoint_exports_classes_and_normalization(tmp_path):
    model = _create("smallcnn")
    checkpoint = tmp_path / "best.safetensors"
    meta = {"arch": "smallcnn", "num_classes": "10", "in_channels": "3", "input_size": "32",
            "classes": json.dumps([f"c{i}" for i in range(10)]),
            "normalization": json.dumps({"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]})}
    st.save(checkpoint, {k: np.array(v) for k, v in model.state_dict().items()}, meta)
    loaded = trugrade.load_model(checkpoint)
    path = tmp_path / "m.onnx"
    trugrade.export_onnx(loaded, path)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["classes"]) == [f"c{i}" for i in range(10)]
    assert json.loads(props["normalization"]) == {"mean": pytest.approx([0.5, 0.4, 0.3]),
                                                  "std": pytest.approx([0.2, 0.25, 0.3])}
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    _close(_session(path).run(None, {"input": x})[0], model.forward(x), 1e-4)

    from trugrade import cli
    out = tmp_path / "cli.onnx"
    assert cli.main(["export", str(checkpoint), "--format", "onnx", "--out", str(out)]) == 0
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    plain = tmp_path / "cli.safetensors"
    assert cli.main(["export", str(checkpoint), "--format", "safetensors", "--out", str(plain)]) == 0
    assert set(st.load(plain)[0]) == set(model.state_dict())


def test_safetensors_export_loads_into_plain_pytorch(tmp_path):
    model = trugrade.models.create("resnet18", num_classes=10, input_size=32, class_weights=[1.0] * 10)
    _randomize(model)
    path = tmp_path / "resnet18.safetensors"
    export_safetensors(model, path)
    tensors, meta = st.load(path)
    assert meta["format"] == "pt" and meta["arch"] == "resnet18"
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("loss.")}
    assert {k: v.shape for k, v in tensors.items()} == expected
    reference = torch_models.resnet18(num_classes=10, small_input=True)
    reference.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()}, strict=True)
    reference.eval()
    x = np.random.default_rng(4).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = reference(torch.from_numpy(x)).numpy()
    _close(model.forward(x), want, 1e-4)


# ---- ops the zoo does not use (or not with these attrs), one graph each ----

def _w(*shape):
    return np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32) * 0.5


OP_CASES = [
    ("gelu", (2, 3, 5, 5), "gelu", {}, []),
    ("gelu_tanh", (2, 3, 5, 5), "gelu", {"approximate": 1}, []),
    ("tanh", (2, 3, 5, 5), "tanh", {}, []),
    ("leaky_relu", (2, 3, 5, 5), "leaky_relu", {"negative_slope": 0.2}, []),
    ("hardsigmoid", (2, 3, 5, 5), "hardsigmoid", {}, []),
    ("softmax", (2, 3, 5, 5), "softmax", {"dim": 1}, []),
    ("log_softmax", (2, 7), "log_softmax", {}, []),
    ("avg_pool2d", (2, 3, 7, 7), "avg_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": 1,
                                                "count_include_pad": 0}, []),
    ("max_pool2d_ceil", (2, 3, 7, 7), "max_pool2d", {"kernel_size": 2, "stride": 2, "ceil_mode": 1}, []),
    ("adaptive_3x5", (2, 3, 7, 9), "adaptive_avg_pool2d", {"output_size": [3, 5]}, []),
    ("pad_reflect", (2, 3, 5, 5), "pad", {"pad": [1, 2, 2, 1], "mode": 1}, []),
    ("pad_constant", (2, 3, 5, 5), "pad", {"pad": [1, 0], "value": 0.5}, []),
    ("slice", (2, 6, 5, 5), "slice", {"dim": 1, "start": 1, "end": 6, "step": 2}, []),
    ("reshape", (2, 3, 4, 4), "reshape", {"shape": [2, 12, 4]}, []),
    ("flatten_23", (2, 3, 4, 4), "flatten", {"start_dim": 2}, []),
    ("transpose", (2, 3, 4, 5), "transpose", {"dim0": 1, "dim1": 3}, []),
    ("permute", (2, 3, 4, 5), "permute", {"dims": [0, 2, 3, 1]}, []),
    ("scale", (2, 3, 4, 4), "scale", {"factor": -2.5}, []),
    ("upsample_nearest_size", (2, 3, 4, 5), "upsample_nearest", {"size": [7, 9]}, []),
    ("upsample_bilinear_size", (2, 3, 4, 5), "upsample_bilinear", {"size": [7, 9]}, []),
    ("upsample_bilinear_scale_ac", (2, 3, 4, 5), "upsample_bilinear", {"scale_factor": 2.0, "align_corners": 1}, []),
    ("sub", (2, 3, 4, 4), "sub", {}, [("b", _w(3, 1, 1))]),
    ("div", (2, 3, 4, 4), "div", {}, [("b", np.abs(_w(4)) + 0.5)]),
    ("linear_3d", (2, 5, 6), "linear", {}, [("fc.weight", _w(4, 6)), ("fc.bias", _w(4))]),
    ("linear_no_bias", (2, 6), "linear", {}, [("fc.weight", _w(4, 6))]),
    ("conv_transpose_outpad", (2, 4, 5, 5), "conv_transpose2d", {"stride": 2, "padding": 1, "output_padding": 1},
     [("up.weight", _w(4, 3, 3, 3)), ("up.bias", _w(3))]),
    ("conv_dilated_groups", (2, 4, 9, 9), "conv2d", {"stride": 2, "padding": 2, "dilation": 2, "groups": 2},
     [("conv.weight", _w(6, 2, 3, 3))]),
]


@pytest.mark.parametrize("case", OP_CASES, ids=[c[0] for c in OP_CASES])
def test_single_op_matches_onnxruntime(case, tmp_path):
    name, shape, op, attrs, params = case
    graph = trugrade.Graph()
    x = graph.input("x", shape)
    ids = []
    for pname, value in params:
        ids.append(graph.param(pname, value.shape))
        graph.set_value(ids[-1], value)
    y = graph.op(op, [x] + ids, **attrs)
    graph.keep(y)
    graph.plan()
    data = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    graph.feed(x, data)
    graph.run()
    want = np.asarray(graph.value(y))
    path = tmp_path / f"{name}.onnx"
    _C.export_onnx(graph, str(path), None, input=x, output=y)
    onnx.checker.check_model(str(path), full_check=True)
    got = _session(path).run(None, {"input": data})[0]
    assert got.shape == want.shape
    _close(got, want, 1e-5)
