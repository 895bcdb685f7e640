"""int8 post-training quantization (csrc/ops/qgemm.c, csrc/ops/quantized.c,
csrc/models/quantize.c, trugrade/quantization.py): the integer GEMM exactly against numpy
for both kernels, the quantized ops' thread determinism, the quantized model against the
float one, and the QDQ ONNX export in onnxruntime."""
import json

import numpy as np
import pytest

import trugrade
from trugrade import _C
from trugrade import safetensors as st
from opcheck import randn

GEMM_SHAPES = [(1, 1, 1), (1, 10, 300), (7, 33, 5), (9, 65, 37), (17, 32, 64), (130, 40, 3136), (64, 257, 288)]


def _has_vnni():
    with open("/proc/cpuinfo") as handle:
        return "avx512_vnni" in handle.read()


@pytest.mark.parametrize("backend", ["auto", "portable"])
@pytest.mark.parametrize("m,n,k", GEMM_SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in GEMM_SHAPES])
def test_qgemm_matches_numpy_exactly(m, n, k, backend):
    rng = np.random.default_rng(m * 1000 + n + k)
    a = rng.integers(0, 256, size=(m, k)).astype(np.uint8)
    b = rng.integers(-128, 128, size=(n, k)).astype(np.int8)
    a[0, :] = 255                      # the extremes: no saturation anywhere
    b[0, :] = -128
    expected = a.astype(np.int64) @ b.astype(np.int64).T
    got = np.asarray(_C.qgemm_u8s8(a, b, backend=backend))
    assert got.dtype == np.int32 and got.shape == (m, n)
    assert np.array_equal(got, expected)


DOT_SHAPES = [(1, 1, 1), (1, 256, 3136), (3, 10, 65), (2, 33, 64), (1, 7, 130)]


@pytest.mark.parametrize("backend", ["auto", "portable"])
@pytest.mark.parametrize("m,n,k", DOT_SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in DOT_SHAPES])
def test_qgemm_dot_form_matches_numpy_exactly(m, n, k, backend):
    rng = np.random.default_rng(m + n * 5 + k)
    a = rng.integers(0, 256, size=(m, k)).astype(np.uint8)
    b = rng.integers(-128, 128, size=(n, k)).astype(np.int8)
    b[0, :] = -128
    got = np.asarray(_C.qgemm_u8s8(a, b, backend=backend, form="dot"))
    assert np.array_equal(got, a.astype(np.int64) @ b.astype(np.int64).T)


@pytest.mark.parametrize("backend", ["auto", "portable"])
@pytest.mark.parametrize("o,p,k", GEMM_SHAPES, ids=[f"{o}x{p}x{k}" for o, p, k in GEMM_SHAPES])
def test_qgemm_columns_form_matches_numpy_exactly(o, p, k, backend):
    rng = np.random.default_rng(o * 7 + p * 3 + k)
    w = rng.integers(-128, 128, size=(o, k)).astype(np.int8)
    x = rng.integers(0, 256, size=(k, p)).astype(np.uint8)
    w[-1, :] = -128
    x[:, -1] = 255
    got = np.asarray(_C.qgemm_s8u8_cols(w, x, backend=backend))
    assert got.dtype == np.int32 and np.array_equal(got, w.astype(np.int64) @ x.astype(np.int64))


def test_qgemm_uses_vnni_on_this_cpu():
    expected = "avx512-vnni-8x32" if _has_vnni() else "portable"
    assert _C.qgemm_kernel_name() == expected


def test_qgemm_refuses_wrong_dtypes():
    with pytest.raises(ValueError, match="uint8"):
        _C.qgemm_u8s8(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.int8))
    with pytest.raises(ValueError, match="backend"):
        _C.qgemm_u8s8(np.zeros((2, 3), np.uint8), np.zeros((2, 3), np.int8), backend="fast")


def _int8(*shape, seed=0):
    return np.random.default_rng(seed).integers(-127, 128, size=shape).astype(np.int8)


DETERMINISM = [
    ("quantized_conv2d", [randn(5, 16, 13, 13, seed=1), _int8(24, 8, 3, 3, seed=2),
                          np.full(24, 0.004, np.float32), randn(24, seed=3)],
     dict(stride=2, padding=1, groups=2, input_scale=0.02, input_zero_point=117)),
    ("quantized_linear", [randn(70, 300, seed=1), _int8(45, 300, seed=2), np.full(45, 0.003, np.float32),
                          randn(45, seed=3)], dict(input_scale=0.01, input_zero_point=128)),
]


@pytest.mark.parametrize("name,inputs,attrs", DETERMINISM, ids=[d[0] for d in DETERMINISM])
def test_quantized_ops_same_bits_for_1_and_2_threads(name, inputs, attrs):
    op = trugrade.ops.OPS[name]
    before = trugrade.get_num_threads()
    try:
        trugrade.set_num_threads(1)
        one = np.array(op(*inputs, **attrs))
        trugrade.set_num_threads(2)
        two = np.array(op(*inputs, **attrs))
    finally:
        trugrade.set_num_threads(before)
    assert one.tobytes() == two.tobytes()


def test_quantized_ops_refuse_bad_attributes():
    x, w, s = randn(1, 2, 5, 5), _int8(3, 2, 3, 3), np.ones(3, np.float32)
    with pytest.raises(trugrade.TrugradeError, match="input_zero_point must be in"):
        trugrade.ops.quantized_conv2d(x, w, s, input_scale=0.1, input_zero_point=300)
    with pytest.raises(trugrade.TrugradeError, match="input_scale must be a positive"):
        trugrade.ops.quantized_conv2d(x, w, s, input_scale=0.0)
    with pytest.raises(trugrade.TrugradeError, match="weight"):
        trugrade.ops.quantized_conv2d(x, w.astype(np.float32), s, input_scale=0.1)
    with pytest.raises(trugrade.TrugradeError, match="weight_scale has shape"):
        trugrade.ops.quantized_linear(randn(2, 4), _int8(3, 4), np.ones(2, np.float32), input_scale=0.1)


def _trained_like(arch, seed=0, **options):
    """A model with non-trivial batchnorm statistics (as after training)."""
    model = trugrade.models.create(arch, seed=seed, **options)
    rng = np.random.default_rng(seed)
    state = {}
    for name, value in model.state_dict().items():
        if name.endswith("running_var"):
            state[name] = rng.uniform(0.5, 2.0, value.shape).astype(np.float32)
        elif name.endswith("running_mean"):
            state[name] = rng.normal(0, 0.2, value.shape).astype(np.float32)
        elif name.endswith(".weight") and value.ndim == 1:
            state[name] = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
        else:
            state[name] = np.array(value)
    model.load_state_dict(state)
    return model


def _images(n, channels=1, size=28, seed=5):
    return np.random.default_rng(seed).standard_normal((n, channels, size, size)).astype(np.float32)


def test_quantized_fashioncnn_is_close_to_float_and_folds_batchnorm():
    model = _trained_like("fashioncnn", num_classes=10, in_channels=1, input_size=28)
    calib, x = _images(96, seed=1), _images(64, seed=2)
    qmodel = trugrade.quantize(model, calib)
    assert qmodel.quantized_layers == 6                       # 4 convs, 2 linears
    state = qmodel.state_dict()
    assert state["features.0.weight"].dtype == np.int8 and state["features.0.weight"].shape == (32, 1, 3, 3)
    assert state["features.0.weight_scale"].shape == (32,)
    assert "features.1.running_var" not in state and "features.0.bias" in state   # batchnorm folded
    assert np.abs(state["classifier.3.weight"].astype(int)).max() == 127          # symmetric per channel
    expected, got = model.forward(x), qmodel.forward(x)
    assert got.shape == expected.shape
    relative = np.abs(got - expected).max() / np.abs(expected).max()
    assert relative < 0.05, relative
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9
    assert np.array_equal(np.asarray(model.forward(x)), expected)              # the float model is untouched


def test_quantized_model_is_deterministic_across_threads():
    model = _trained_like("fashioncnn", num_classes=10, in_channels=1, input_size=28)
    qmodel = trugrade.quantize(model, _images(32, seed=1))
    x = _images(9, seed=3)
    before = trugrade.get_num_threads()
    try:
        trugrade.set_num_threads(1)
        one = qmodel.forward(x)
        trugrade.set_num_threads(2)
        two = qmodel.forward(x)
    finally:
        trugrade.set_num_threads(before)
    assert one.tobytes() == two.tobytes()


def test_quantized_resnet_with_residuals_and_downsampling():
    model = _trained_like("resnet18", num_classes=5, in_channels=3, input_size=32)
    qmodel = trugrade.quantize(model, _images(16, channels=3, size=32, seed=1))
    assert qmodel.quantized_layers == 21                      # 20 convs (3 downsamples) + fc
    x = _images(8, channels=3, size=32, seed=2)
    expected, got = model.forward(x), qmodel.forward(x)
    assert np.abs(got - expected).max() / np.abs(expected).max() < 0.1


def test_quantize_a_loaded_model_from_calibration_files(tmp_path):
    model = _trained_like("smallcnn", num_classes=3, in_channels=1, input_size=28)
    checkpoint = tmp_path / "best.safetensors"
    meta = {"arch": "smallcnn", "num_classes": "3", "in_channels": "1", "input_size": "28",
            "classes": json.dumps(["a", "b", "c"]), "normalization": json.dumps({"mean": [0.3], "std": [0.3]})}
    st.save(checkpoint, {k: np.array(v) for k, v in model.state_dict().items()}, meta)
    loaded = trugrade.load_model(checkpoint)
    raw = np.random.default_rng(0).integers(0, 256, size=(40, 28, 28)).astype(np.uint8)
    np.save(tmp_path / "calib.npy", raw)
    folder = tmp_path / "pngs"
    folder.mkdir()
    from trugrade.synthetic import write_png_gray
    for i in range(6):
        write_png_gray(str(folder / f"{i}.png"), raw[i])
    for source in (raw, tmp_path / "calib.npy", folder):
        quantized = trugrade.quantize(loaded, source)
        assert trugrade.quantization.is_quantized(quantized) and not trugrade.quantization.is_quantized(loaded)
        assert quantized.classes == loaded.classes
        p, q = loaded.predict(raw[:10]), quantized.predict(raw[:10])
        assert q.shape == (10, 3) and np.allclose(q.sum(1), 1, atol=1e-5)
        assert np.abs(p - q).max() < 0.05
    with pytest.raises(trugrade.TrugradeValueError, match="already quantized"):
        trugrade.quantize(quantized, raw)
    (tmp_path / "empty").mkdir()
    with pytest.raises(trugrade.TrugradeValueError, match="holds no images"):
        trugrade.quantize(loaded, tmp_path / "empty")


def test_quantized_model_has_no_trainable_parameters():
    model = _trained_like("smallcnn", num_classes=3, in_channels=1, input_size=28)
    qmodel = trugrade.quantize(model, _images(8))
    assert qmodel.parameter_count() == 0            # int8 weights, scales and biases are buffers
    loss, grads = qmodel.loss_and_grads(_images(2), np.array([0, 1]))
    assert np.isfinite(loss) and grads == {}


# ---- QDQ ONNX ----

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _session(path, optimize=True):
    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("arch,channels,size", [("fashioncnn", 1, 28), ("resnet18", 3, 32),
                                                ("mobilenet_v3_small", 3, 32)])
def test_qdq_export_runs_in_onnxruntime_and_matches(arch, channels, size, tmp_path):
    model = _trained_like(arch, num_classes=10, in_channels=channels, input_size=size)
    x = _images(32, channels=channels, size=size, seed=4)
    path = tmp_path / "m8.onnx"
    trugrade.export_onnx(model, path, int8=True, calib=_images(64, channels=channels, size=size, seed=1))
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 17
    ops = [node.op_type for node in proto.graph.node]
    assert "QuantizeLinear" in ops and ops.count("DequantizeLinear") == 2 * ops.count("QuantizeLinear")
    int8 = [t.name for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    weights = [name for name in int8 if "__" not in name]          # "__": the exporter's constants (zero points)
    assert len(weights) == ops.count("QuantizeLinear")             # one int8 weight per quantized layer
    assert ("features.0.weight" if arch == "fashioncnn" else "conv1.weight" if arch == "resnet18"
            else "features.0.0.weight") in weights
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["quantization"])["format"] == "QDQ"

    qmodel = trugrade.quantize(model, _images(64, channels=channels, size=size, seed=1))
    own, fp32 = qmodel.forward(x), model.forward(x)
    scale = np.abs(fp32).max()
    # onnxruntime fuses the QDQ pairs into integer kernels that requantize each output
    # straight to the next layer's uint8 (with an int32 bias): a value on a rounding
    # boundary may land one quantization step away from trugrade's, hence the tolerance
    fused = _session(path).run(None, {"input": x})[0]
    assert np.abs(fused - own).max() <= 0.03 * scale
    assert (fused.argmax(1) == own.argmax(1)).mean() >= 0.9
    plain = _session(path, optimize=False).run(None, {"input": x})[0]   # QDQ evaluated in float
    assert (plain.argmax(1) == own.argmax(1)).mean() >= 0.9
    assert np.abs(plain - own).max() <= 0.05 * scale
    assert (fused.argmax(1) == fp32.argmax(1)).mean() >= 0.85
    assert np.abs(fused - fp32).max() <= 0.1 * scale


def test_int8_export_arguments(tmp_path):
    model = _trained_like("smallcnn", num_classes=3, in_channels=1, input_size=28)
    with pytest.raises(trugrade.TrugradeValueError, match="calibration"):
        trugrade.export_onnx(model, tmp_path / "a.onnx", int8=True)
    with pytest.raises(trugrade.TrugradeValueError, match="exclusive"):
        trugrade.export_onnx(model, tmp_path / "a.onnx", int8=True, float16=True, calib=_images(4))
    qmodel = trugrade.quantize(model, _images(8))
    trugrade.export_onnx(qmodel, tmp_path / "q.onnx")                        # already quantized: no calib
    onnx.checker.check_model(str(tmp_path / "q.onnx"), full_check=True)
    with pytest.raises(trugrade.UnsupportedError, match="float16"):
        trugrade.export_onnx(qmodel, tmp_path / "q16.onnx", float16=True)
