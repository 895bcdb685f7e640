"""`trugrade export` with --int8 --calib, exporting registry versions (every format), and
the accuracy cost of int8 on real Fashion-MNIST (a short training on a subset)."""
import json
import os
import zipfile

import numpy as np
import pytest

import trugrade
from trugrade import _C, cli
from trugrade import safetensors as st
from trugrade.registry import Registry

FASHION = "/usr/share/datasets/fashion-mnist"
META = {"arch": "smallcnn", "num_classes": "3", "in_channels": "1", "input_size": "28",
        "classes": json.dumps(["cat", "dog", "bird"]), "normalization": json.dumps({"mean": [0.3], "std": [0.3]})}


@pytest.fixture
def checkpoint(tmp_path):
    model = trugrade.models.create("smallcnn", num_classes=3, in_channels=1, input_size=28, seed=3)
    path = tmp_path / "best.safetensors"
    st.save(path, {k: np.array(v) for k, v in model.state_dict().items()}, META)
    return path


@pytest.fixture
def calib(tmp_path):
    raw = np.random.default_rng(0).integers(0, 256, size=(48, 28, 28)).astype(np.uint8)
    path = tmp_path / "calib.npy"
    np.save(path, raw)
    return path


def test_cli_int8_onnx_export_matches_python(checkpoint, calib, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "m8.onnx"
    assert cli.main(["export", str(checkpoint), "--format", "onnx", "--int8", "--calib", str(calib),
                     "--out", str(out)]) == 0
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["classes"]) == ["cat", "dog", "bird"] and "quantization" in props
    loaded = trugrade.load_model(checkpoint)
    quantized = trugrade.quantize(loaded, calib)
    images = np.load(calib)[:16]
    x = loaded._prepare(images)
    logits = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    own = quantized.model.forward(x)
    assert np.abs(logits - own).max() <= 0.03 * np.abs(own).max()


def test_cli_int8_needs_calibration_and_onnx(checkpoint, calib, tmp_path, capsys):
    assert cli.main(["export", str(checkpoint), "--format", "onnx", "--int8", "--out", str(tmp_path / "a.onnx")]) == 2
    assert "--calib" in capsys.readouterr().err
    assert cli.main(["export", str(checkpoint), "--format", "safetensors", "--int8", "--calib", str(calib),
                     "--out", str(tmp_path / "a.safetensors")]) == 2
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "a.safetensors").exists()


def test_export_registry_versions_in_every_format(checkpoint, calib, tmp_path):
    onnx = pytest.importorskip("onnx")
    root = tmp_path / "registry"
    registry = Registry(root)
    registry.register(checkpoint, "pets", task="pets-photo")
    other = trugrade.models.create("smallcnn", num_classes=3, in_channels=1, input_size=28, seed=9)
    second = tmp_path / "second.safetensors"
    st.save(second, {k: np.array(v) for k, v in other.state_dict().items()}, META)
    registry.register(second, "pets")

    for ref, version in (("pets:1", 1), ("pets", 2)):
        out = tmp_path / f"{version}.onnx"
        assert cli.main(["export", ref, "--registry", str(root), "--format", "onnx", "--out", str(out)]) == 0
        props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        assert props["registry_version"] == f"pets:{version}"
        assert json.loads(props["normalization"]) == {"mean": [pytest.approx(0.3)], "std": [pytest.approx(0.3)]}
    out8 = tmp_path / "1-int8.onnx"
    assert cli.main(["export", "pets:1", "--registry", str(root), "--format", "onnx", "--int8", "--calib", str(calib),
                     "--out", str(out8)]) == 0
    onnx.checker.check_model(str(out8), full_check=True)

    plain = tmp_path / "1.safetensors"
    assert cli.main(["export", "pets:1", "--registry", str(root), "--format", "safetensors", "--out", str(plain)]) == 0
    tensors, _ = st.load(plain)
    assert np.array_equal(tensors["conv1.weight"], st.load(checkpoint)[0]["conv1.weight"])

    package = tmp_path / "pets-1.tgpkg"
    assert cli.main(["export", "pets:1", "--registry", str(root), "--format", "package", "--out", str(package)]) == 0
    imported = Registry(tmp_path / "elsewhere").import_package(package)
    assert imported.sha256 == registry.get("pets", 1).sha256

    from_run = tmp_path / "from-checkpoint.tgpkg"    # a checkpoint packages through a throwaway registry
    assert cli.main(["export", str(checkpoint), "--format", "package", "--out", str(from_run)]) == 0
    assert "manifest.json" in zipfile.ZipFile(from_run).namelist()


def test_export_registry_version_errors(checkpoint, tmp_path, capsys):
    root = tmp_path / "registry"
    entry = Registry(root).register(checkpoint, "pets")
    assert cli.main(["export", "pets:7", "--registry", str(root), "--format", "onnx",
                     "--out", str(tmp_path / "x.onnx")]) == 2
    assert "no version 7" in capsys.readouterr().err
    assert cli.main(["export", "nothing-here", "--registry", str(root), "--format", "onnx",
                     "--out", str(tmp_path / "x.onnx")]) == 2
    assert "neither a run folder" in capsys.readouterr().err
    with open(entry.path, "r+b") as handle:             # a tampered weight file is refused, never exported
        handle.seek(-4, os.SEEK_END)
        handle.write(b"\0\0\0\1")
    assert cli.main(["export", "pets:1", "--registry", str(root), "--format", "onnx",
                     "--out", str(tmp_path / "x.onnx")]) == 2
    assert "modified or truncated" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="no Fashion-MNIST at " + FASHION)
def test_int8_accuracy_drop_on_fashion_mnist_is_small():
    """fashioncnn trained for one pass over 6000 real training images; on 2000 t10k images the int8
    model (calibrated on 256 other training images) loses at most 1.5 points."""
    from trugrade.train import _find_idx
    images = np.asarray(trugrade.read_idx(_find_idx(FASHION, "train-images-idx3-ubyte")))
    labels = np.asarray(trugrade.read_idx(_find_idx(FASHION, "train-labels-idx1-ubyte")))
    test_images = np.asarray(trugrade.read_idx(_find_idx(FASHION, "t10k-images-idx3-ubyte")))[:2000]
    test_labels = np.asarray(trugrade.read_idx(_find_idx(FASHION, "t10k-labels-idx1-ubyte")))[:2000]
    normalize = lambda im: ((im.astype(np.float32) / 255 - 0.286) / 0.353)[:, None]   # noqa: E731
    model = trugrade.models.create("fashioncnn", num_classes=10, in_channels=1, input_size=28, seed=0)
    optimizer = _C.Optimizer(model._c, "adamw", weight_decay=1e-4)
    rng = np.random.default_rng(0)
    x_train, y_train = normalize(images[:6000]), labels[:6000].astype(np.int64)
    order = rng.permutation(len(x_train))
    for start in range(0, len(order) - 63, 64):
        batch = order[start:start + 64]
        model._c.step(np.ascontiguousarray(x_train[batch]), np.ascontiguousarray(y_train[batch]))
        optimizer.step(2e-3)
    x_test = normalize(test_images)
    quantized = trugrade.quantize(model, normalize(images[50000:50256]))
    fp32 = (model.forward(x_test).argmax(1) == test_labels).mean()
    int8 = (quantized.forward(x_test).argmax(1) == test_labels).mean()
    assert fp32 >= 0.75, f"the float model did not train ({fp32:.3f})"
    assert fp32 - int8 <= 0.015, f"int8 accuracy {int8:.4f} vs float32 {fp32:.4f}"
