"""Training runs end to end on a small real Fashion-MNIST subset: the run folder, metrics,
checkpoints, the report, Ctrl-C, and a resume that is bit-identical to an uninterrupted run."""
import gzip
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import trugrade
from trugrade import safetensors
from trugrade.train import train

FASHION = "/usr/share/datasets/fashion-mnist"


def write_idx(path, array):
    dims = array.shape
    header = struct.pack(">HBB", 0, 0x08, len(dims)) + b"".join(struct.pack(">I", d) for d in dims)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def small_fashion(tmp_path_factory):
    """600 training and 200 test images of the real Fashion-MNIST, as IDX files."""
    folder = tmp_path_factory.mktemp("fashion")
    images = trugrade.read_idx(f"{FASHION}/train-images-idx3-ubyte.gz")
    labels = trugrade.read_idx(f"{FASHION}/train-labels-idx1-ubyte.gz")
    test_images = trugrade.read_idx(f"{FASHION}/t10k-images-idx3-ubyte.gz")
    test_labels = trugrade.read_idx(f"{FASHION}/t10k-labels-idx1-ubyte.gz")
    write_idx(folder / "train-images-idx3-ubyte.gz", images[:600])
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels[:600])
    write_idx(folder / "t10k-images-idx3-ubyte.gz", test_images[:200])
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", test_labels[:200])
    return str(folder)


def config(data, runs, **changes):
    cfg = {
        "model": {"arch": "smallcnn", "num_classes": 10, "in_channels": 1, "input_size": 28, "dropout": 0.2},
        "data": {"path": data, "format": "idx", "batch_size": 32, "split": {"train": 0.9, "val": 0.1, "test": 0.0},
                 "augment": [{"name": "hflip", "params": {"p": 0.5}},
                             {"name": "normalize", "params": {"mean": [0.286], "std": [0.353]}}]},
        "optim": {"name": "adamw", "lr": 2e-3},
        "schedule": {"name": "cosine"},
        "train": {"epochs": 3, "seed": 1},
        "checkpoint": {"best_metric": "val_accuracy", "keep_last": 2},
        "run": {"name": "t", "dir": runs},
    }
    for key, value in changes.items():
        section, field = key.split("__")
        cfg[section][field] = value
    return cfg


def test_a_run_produces_its_folder_metrics_checkpoints_and_report(small_fashion, tmp_path):
    run = train(config(small_fashion, str(tmp_path)), progress=False)
    assert run.status == "completed" and len(run.metrics) == 3
    assert run.metrics[-1]["val_accuracy"] > 0.5 and run.test["accuracy"] > 0.5
    for name in ("config.yaml", "run.json", "metrics.jsonl", "report.html", "confusion.png", "curves.png"):
        assert os.path.exists(os.path.join(run.dir, name)), name
    lines = [json.loads(line) for line in open(os.path.join(run.dir, "metrics.jsonl"))]
    step_lines = [r for r in lines if "step" in r and "loss" in r]
    assert len(step_lines) == 3 * 17 and all("lr" in r for r in step_lines)
    ckpt = sorted(os.listdir(os.path.join(run.dir, "checkpoints")))
    assert ckpt == ["best.safetensors", "epoch-0002.safetensors", "epoch-0003.safetensors", "last.safetensors"]
    tensors, meta = safetensors.load(run.best_checkpoint)
    assert "conv1.weight" in tensors and "trainer.optim.m.conv1.weight" in tensors
    assert meta["arch"] == "smallcnn" and json.loads(meta["normalization"])["mean"] == [0.286]


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_resume_after_sigkill_is_bit_identical(small_fashion, tmp_path, ema_decay):
    """A training process killed with SIGKILL in its second epoch, then resumed, ends with
    the same losses and weights, bit for bit, as a run never interrupted (with a weight EMA
    too: its averages and the live weights both resume)."""
    whole = train(config(small_fashion, str(tmp_path / "a"), train__ema_decay=ema_decay), progress=False)
    cfg = config(small_fashion, str(tmp_path / "b"), train__ema_decay=ema_decay)
    script = (f"from trugrade.train import train; train({cfg!r}, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", script])
    metrics = tmp_path / "b" / "t" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and sum(1 for line in open(metrics) if '"step": 2' in line and "loss" in line) >= 1:
            rows = [json.loads(line) for line in open(metrics)]
            if any(r.get("epoch") == 1 and "step" in r for r in rows):
                break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    resumed = train(None, resume=str(tmp_path / "b" / "t"), progress=False)
    assert [m["train_loss"] for m in resumed.metrics] == [m["train_loss"] for m in whole.metrics]
    a, _ = safetensors.load(whole.last_checkpoint)
    b, _ = safetensors.load(resumed.last_checkpoint)
    assert set(a) == set(b) and (ema_decay is None) == ("trainer.live.conv1.weight" not in a)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    steps = [json.loads(line) for line in open(metrics) if '"loss"' in line and '"step"' in line]
    assert [r["step"] for r in steps] == list(range(1, 3 * 17 + 1))


def test_resume_refuses_a_changed_config(small_fashion, tmp_path):
    first = train(config(small_fashion, str(tmp_path), train__epochs=1), progress=False)
    with pytest.raises(trugrade.ConfigError, match="differs"):
        train(config(small_fashion, str(tmp_path), train__epochs=2, optim__lr=0.1), resume=first.dir, progress=False)


@pytest.mark.parametrize("extra", [{}, {"train__bf16": True, "train__accumulate": 2, "train__ema_decay": 0.5,
                                        "train__label_smoothing": 0.1}])
def test_ctrl_c_saves_a_checkpoint_and_resume_matches(small_fashion, tmp_path, extra):
    """An interrupt mid-epoch stops at a step boundary; resuming from there reproduces the
    uninterrupted run's weights exactly (also with bf16, accumulation and a weight EMA)."""
    whole = train(config(small_fashion, str(tmp_path / "a"), train__epochs=2, **extra), progress=False)
    timer = threading.Timer(0.05, trugrade._C.interrupt)
    original = trugrade._C.Trainer.run_epoch

    cfg = config(small_fashion, str(tmp_path / "b"), train__epochs=2, **extra)
    import importlib
    train_module = importlib.import_module("trugrade.train")  # the module; trugrade.train is the function
    calls = {"n": 0}

    def interrupting_epoch(trainer, progress):
        calls["n"] += 1
        if calls["n"] == 1:
            trugrade._C.interrupt()  # requested before the first step: the C loop stops at once
            raise KeyboardInterrupt
        return original(trainer, catch_sigint=False)

    saved = train_module._run_epoch_polled
    train_module._run_epoch_polled = interrupting_epoch
    try:
        stopped = train(cfg, progress=False)
    finally:
        train_module._run_epoch_polled = saved
    timer.cancel()
    assert stopped.status == "interrupted" and os.path.exists(stopped.last_checkpoint)
    resumed = train(None, resume=stopped.dir, progress=False)
    a, _ = safetensors.load(whole.last_checkpoint)
    b, _ = safetensors.load(resumed.last_checkpoint)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_nan_stops_the_run_naming_the_step_and_layer(small_fashion, tmp_path):
    """Weights with a NaN in fc1 make the loss NaN at the first step: the run stops with a message
    naming the step and the layer, and no checkpoint is written from the bad state."""
    model = trugrade.models.create("smallcnn", num_classes=10, in_channels=1, input_size=28)
    weights = model.state_dict()
    weights["fc1.weight"] = weights["fc1.weight"].copy()
    weights["fc1.weight"][3, 5] = np.nan
    path = tmp_path / "bad.safetensors"
    safetensors.save(path, weights)
    with pytest.raises(trugrade.TrugradeError, match=r"epoch 1 step 0.*linear.*fc1\.weight"):
        train(config(small_fashion, str(tmp_path), model__pretrained=str(path)), progress=False)
    assert not os.path.exists(tmp_path / "t" / "checkpoints" / "last.safetensors")


def write_folder_dataset(root, per_class=30, corrupt=False):
    """Two classes of 32x32 RGB PNGs told apart by brightness, in class folders."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for c, name in enumerate(("dark", "light")):
        os.makedirs(root / name, exist_ok=True)
        for i in range(per_class):
            base = 60 + 120 * c
            pixels = np.clip(base + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    if corrupt:
        data = open(root / "dark" / "0.png", "rb").read()
        open(root / "dark" / "0.png", "wb").write(data[: len(data) // 2])


def folder_config(data, runs):
    return {
        "model": {"arch": "smallcnn", "num_classes": 2, "in_channels": 3, "input_size": 28},
        "data": {"path": str(data), "batch_size": 8, "num_workers": 2,
                 "split": {"train": 0.7, "val": 0.15, "test": 0.15},
                 "augment": [{"name": "resize", "params": {"size": 28}}, {"name": "hflip", "params": {"p": 0.5}},
                             {"name": "normalize", "params": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}]},
        "optim": {"name": "adamw", "lr": 3e-3},
        "train": {"epochs": 3, "seed": 0},
        "checkpoint": {"best_metric": "val_accuracy"},
        "run": {"name": "folder", "dir": str(runs)},
    }


def test_image_folder_trains_through_the_loader(tmp_path):
    write_folder_dataset(tmp_path / "data")
    run = train(folder_config(tmp_path / "data", tmp_path / "runs"), progress=False)
    assert run.status == "completed" and run.test["accuracy"] >= 0.85
    model = trugrade.load_model(run.best_checkpoint)
    from PIL import Image
    light = np.asarray(Image.open(tmp_path / "data" / "light" / "3.png"))
    assert model.classes == ["dark", "light"] and model.predict(light[None]).argmax() == 1


def test_preflight_refuses_a_corrupt_dataset_unless_told(tmp_path):
    write_folder_dataset(tmp_path / "data", corrupt=True)
    with pytest.raises(trugrade.DatasetError, match="0.png"):
        train(folder_config(tmp_path / "data", tmp_path / "runs"), progress=False)
    with pytest.raises(trugrade.DecodeError, match="0.png"):  # data.on_bad_file: stop (the default)
        train(folder_config(tmp_path / "data", tmp_path / "runs"), progress=False, check_dataset=False)
    cfg = folder_config(tmp_path / "data", tmp_path / "runs")
    cfg["data"]["on_bad_file"] = "skip"
    run = train(cfg, progress=False, check_dataset=False)
    assert run.status == "completed"
