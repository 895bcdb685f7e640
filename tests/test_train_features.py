"""Training-loop features of the C trainer: label smoothing, class weights and focal loss for
classifiers (checked against PyTorch), weight EMA (against a numpy recurrence), bfloat16
mixed precision and gradient accumulation."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import trugrade
from trugrade import _C, models
from trugrade.train import balanced_class_weights


def _data(n=48, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 1, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, classes, size=n).astype(np.int64)
    return images, labels


def _eval_loss(model, images, labels):
    trainer = _C.Trainer(model._c, images, labels, batch_size=len(images), epochs=1)
    logits, loss = trainer.evaluate(images, labels)
    return np.asarray(logits), loss


@pytest.mark.parametrize("smoothing,weighted", [(0.1, False), (0.0, True), (0.2, True)])
def test_classifier_loss_equals_torch_cross_entropy(smoothing, weighted):
    images, labels = _data()
    weights = np.linspace(0.5, 2.0, 10).astype(np.float32) if weighted else None
    model = models.create("smallcnn", num_classes=10, in_channels=1, input_size=28, seed=3,
                          class_weights=weights, label_smoothing=smoothing)
    logits, loss = _eval_loss(model, images, labels)
    expected = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels),
                               weight=None if weights is None else torch.from_numpy(weights),
                               label_smoothing=smoothing)
    np.testing.assert_allclose(loss, expected.item(), rtol=1e-5, atol=1e-6)


def test_classifier_focal_loss_equals_the_formula():
    images, labels = _data()
    model = models.create("smallcnn", num_classes=10, in_channels=1, input_size=28, seed=3,
                          loss={"focal": 1.0, "gamma": 2.0})
    logits, loss = _eval_loss(model, images, labels)
    logp = F.log_softmax(torch.from_numpy(logits).double(), 1).gather(1, torch.from_numpy(labels)[:, None])[:, 0]
    expected = (-(1 - logp.exp()) ** 2 * logp).mean().item()
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_balanced_class_weights_equal_sklearn():
    from sklearn.utils.class_weight import compute_class_weight
    labels = np.array([0] * 50 + [1] * 30 + [2] * 15 + [3] * 5)
    np.testing.assert_allclose(balanced_class_weights(labels, 4),
                               compute_class_weight("balanced", classes=np.arange(4), y=labels), rtol=1e-6)


FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def tiny_fashion(tmp_path_factory):
    """400 training and 100 test images of the real Fashion-MNIST, as IDX files."""
    import gzip
    import struct
    folder = tmp_path_factory.mktemp("fashion")
    for stem, count in (("train-images-idx3-ubyte", 400), ("train-labels-idx1-ubyte", 400),
                        ("t10k-images-idx3-ubyte", 100), ("t10k-labels-idx1-ubyte", 100)):
        array = trugrade.read_idx(f"{FASHION}/{stem}.gz")[:count]
        header = struct.pack(">HBB", 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
        with gzip.open(folder / f"{stem}.gz", "wb") as f:
            f.write(header + array.astype(np.uint8).tobytes())
    return str(folder)


def run_config(data, runs, **changes):
    cfg = {
        "model": {"arch": "smallcnn", "num_classes": 10, "in_channels": 1, "input_size": 28},
        "data": {"path": data, "format": "idx", "batch_size": 32, "split": {"train": 0.9, "val": 0.1, "test": 0.0},
                 "augment": [{"name": "normalize", "params": {"mean": [0.286], "std": [0.353]}}]},
        "optim": {"name": "adamw", "lr": 2e-3},
        "train": {"epochs": 1, "seed": 1},
        "checkpoint": {"best_metric": "val_accuracy"},
        "run": {"name": "t", "dir": runs},
    }
    for key, value in changes.items():
        section, field = key.split("__")
        cfg.setdefault(section, {})[field] = value
    return cfg


def test_a_run_trains_with_label_smoothing_and_auto_class_weights(tiny_fashion, tmp_path):
    from trugrade import safetensors
    from trugrade.train import load_data, train
    cfg = run_config(tiny_fashion, str(tmp_path), train__label_smoothing=0.1, train__class_weights="auto")
    run = train(cfg, progress=False)
    assert run.status == "completed" and np.isfinite(run.metrics[-1]["train_loss"])
    tensors, _ = safetensors.load(run.last_checkpoint)
    splits, _ = load_data(run.config)
    np.testing.assert_allclose(tensors["loss.class_weight"], balanced_class_weights(splits["train"][1], 10))
    loaded = trugrade.load_model(run.last_checkpoint)
    assert loaded is not None


def test_a_run_trains_with_focal_loss(tiny_fashion, tmp_path):
    from trugrade.train import train
    run = train(run_config(tiny_fashion, str(tmp_path), loss__name="focal", loss__focal_gamma=2.0), progress=False)
    assert run.status == "completed" and np.isfinite(run.metrics[-1]["train_loss"])


def test_label_smoothing_without_cross_entropy_is_a_config_error(tiny_fashion, tmp_path):
    from trugrade.train import train
    cfg = run_config(tiny_fashion, str(tmp_path), loss__name="focal", train__label_smoothing=0.1)
    with pytest.raises(trugrade.ConfigError, match="label_smoothing"):
        train(cfg, progress=False)


# --------------------------------------------------------------------------- random_crop padding


def test_random_crop_padding_is_a_window_of_the_zero_padded_image():
    """Like torchvision's RandomCrop(size, padding=p): pad p zeros on every side, then a uniform
    window; every offset in [0, 2p]^2 occurs, and a draw depends only on (seed, epoch, index)."""
    from trugrade.augment import Pipeline
    rng = np.random.default_rng(0)
    image = rng.integers(1, 256, size=(2, 6, 7), dtype=np.uint8)
    pad = 2
    padded = np.pad(image.astype(np.float32), ((0, 0), (pad, pad), (pad, pad)))
    windows = {(y, x): padded[:, y:y + 6, x:x + 7] for y in range(2 * pad + 1) for x in range(2 * pad + 1)}
    pipeline = Pipeline([{"name": "random_crop", "size": [6, 7], "padding": pad}])
    seen = set()
    for index in range(200):
        out = pipeline(image, seed=5, epoch=1, index=index)["image"]
        match = [k for k, w in windows.items() if np.array_equal(out, w)]
        assert match, f"index {index}: not a window of the padded image"
        seen.add(match[0])
        again = pipeline(image, seed=5, epoch=1, index=index)["image"]
        np.testing.assert_array_equal(out, again)
    assert len(seen) == len(windows)
    other = [pipeline(image, seed=5, epoch=2, index=i)["image"] for i in range(20)]
    first = [pipeline(image, seed=5, epoch=1, index=i)["image"] for i in range(20)]
    assert any(not np.array_equal(a, b) for a, b in zip(other, first))


def test_random_crop_padding_validates():
    from trugrade.augment import Pipeline
    with pytest.raises(trugrade.ConfigError, match="padding"):
        Pipeline([{"name": "random_crop", "size": 4, "padding": -1}])
    image = np.zeros((1, 4, 4), np.uint8)
    with pytest.raises(trugrade.ConfigError, match="larger than the image"):
        Pipeline([{"name": "random_crop", "size": 9, "padding": 2}])(image)
    out = Pipeline([{"name": "random_crop", "size": 8, "padding": 2}])(image)["image"]
    assert out.shape == (1, 8, 8)


def test_a_run_trains_with_random_crop_padding(tiny_fashion, tmp_path):
    from trugrade.train import train
    augment = [{"name": "random_crop", "params": {"size": 28, "padding": 2}}, {"name": "hflip", "params": {"p": 0.5}},
               {"name": "normalize", "params": {"mean": [0.286], "std": [0.353]}}]
    run = train(run_config(tiny_fashion, str(tmp_path), data__augment=augment), progress=False)
    assert run.status == "completed" and np.isfinite(run.metrics[-1]["train_loss"])


# --------------------------------------------------------------------------- weight EMA


def _state(model):
    return {k: np.array(v, copy=True) for k, v in model.state_dict().items()}


def test_ema_follows_the_numpy_recurrence_and_evaluation_uses_it():
    """ema_0 = w_0, ema_t = ema_{t-1} + (1 - d) (w_t - ema_{t-1}) after every optimizer step,
    for parameters and batchnorm running statistics; evaluate() runs on the EMA weights and
    leaves the live weights as they were."""
    images, labels = _data(n=16)
    decay = 0.8
    model = models.create("fashioncnn", num_classes=10, in_channels=1, input_size=28, seed=2)
    trainer = _C.Trainer(model._c, images, labels, batch_size=16, epochs=6, optimizer="sgd", lr=0.05,
                         momentum=0.9, ema_decay=decay)
    tracked = {k for k, v in _state(model).items() if v.dtype == np.float32}
    ema = {k: v for k, v in _state(model).items() if k in tracked}
    keep_out = np.float32(1.0 - decay)
    for epoch in range(6):
        trainer.run_epoch()
        live = _state(model)
        for k in ema:
            ema[k] = ema[k] + keep_out * (live[k] - ema[k])
        got = trainer.ema_weights()
        assert set(got) == tracked
        for k in ema:
            np.testing.assert_allclose(np.asarray(got[k]).reshape(ema[k].shape), ema[k], rtol=1e-6, atol=1e-7, err_msg=k)
    before = _state(model)
    logits_ema, loss_ema = trainer.evaluate(images, labels)
    after = _state(model)
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)
    logits_live, _ = trainer.evaluate(images, labels, ema=False)
    assert not np.allclose(np.asarray(logits_ema), np.asarray(logits_live))
    other = models.create("fashioncnn", num_classes=10, in_channels=1, input_size=28, seed=2)
    weights = trainer.ema_weights()
    other.load_state_dict({k: (np.asarray(weights[k]).reshape(v.shape) if k in weights else v) for k, v in after.items()})
    expected, expected_loss = _eval_loss(other, images, labels)
    np.testing.assert_array_equal(np.asarray(logits_ema), expected)


def test_ema_and_bf16_are_thread_count_independent():
    images, labels = _data(n=32)
    results = []
    for threads in (1, 2):
        trugrade.set_num_threads(threads)
        model = models.create("smallcnn", num_classes=10, in_channels=1, input_size=28, seed=2)
        trainer = _C.Trainer(model._c, images, labels, batch_size=16, epochs=2, optimizer="adamw", lr=1e-3,
                             ema_decay=0.9, bf16=True)
        trainer.run_epoch()
        trainer.run_epoch()
        results.append(trainer.ema_weights())
    trugrade.set_num_threads(2)
    for k in results[0]:
        np.testing.assert_array_equal(np.asarray(results[0][k]), np.asarray(results[1][k]), err_msg=k)


def test_ema_run_checkpoints_hold_the_ema_weights(tiny_fashion, tmp_path):
    from trugrade import safetensors
    from trugrade.train import train
    run = train(run_config(tiny_fashion, str(tmp_path), train__ema_decay=0.9, train__epochs=2), progress=False)
    assert run.status == "completed"
    tensors, _ = safetensors.load(run.last_checkpoint)
    assert "trainer.live.conv1.weight" in tensors and "trainer.ema.conv1.weight" not in tensors
    assert not np.array_equal(tensors["conv1.weight"], tensors["trainer.live.conv1.weight"])
    loaded = trugrade.load_model(run.last_checkpoint)
    np.testing.assert_array_equal(loaded.model.state_dict()["conv1.weight"], tensors["conv1.weight"])


# --------------------------------------------------------------------------- bfloat16 mixed precision


class _bf16_operands:
    def __enter__(self):
        self.previous = _C.set_bf16_operands(True)

    def __exit__(self, *exc):
        _C.set_bf16_operands(self.previous)


def _round_bf16(a):
    return torch.from_numpy(np.ascontiguousarray(a)).bfloat16().float()


@pytest.mark.parametrize("shape,stride,padding,groups", [
    ((2, 8, 13, 11), 1, 1, 1), ((1, 6, 9, 9), 2, 1, 2), ((3, 16, 8, 8), 1, 0, 1)])
def test_bf16_conv2d_rounds_operands_and_accumulates_in_float32(shape, stride, padding, groups):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = 1 if padding == 0 else 3
    w = rng.standard_normal((12, shape[1] // groups, kernel, kernel)).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    attrs = dict(stride=stride, padding=padding, groups=groups)
    fp32 = trugrade.ops.conv2d(x, w, b, **attrs)
    with _bf16_operands():
        out = trugrade.ops.conv2d(x, w, b, **attrs)
        gy = rng.standard_normal(out.shape).astype(np.float32)
        gx, gw, gb = trugrade.ops.conv2d.backward(x, w, b, grad_output=gy, **attrs)
    # exactly the bf16-rounded operands with float32 (here float64) accumulation
    xd, wd = _round_bf16(x).double(), _round_bf16(w).double()
    ref = F.conv2d(xd, wd, torch.from_numpy(b).double(), **attrs).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    # within bfloat16 tolerance of float32, and of PyTorch's bfloat16 autocast
    np.testing.assert_allclose(out, fp32, rtol=2e-2, atol=5e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), **attrs)
    assert auto.dtype == torch.bfloat16
    np.testing.assert_allclose(out, auto.float().numpy(), rtol=1e-2, atol=2e-2)
    assert np.abs(out - fp32).max() > 0  # the rounding happened
    # backward: the data gradient is gy (rounded) against the rounded weights
    ref_gx = torch.nn.grad.conv2d_input(x.shape, wd, _round_bf16(gy).double(), **attrs).numpy()
    np.testing.assert_allclose(gx, ref_gx, rtol=1e-4, atol=1e-4)


def test_bf16_linear_matches_autocast():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((17, 40)).astype(np.float32)
    w = rng.standard_normal((23, 40)).astype(np.float32)
    b = rng.standard_normal(23).astype(np.float32)
    with _bf16_operands():
        out = trugrade.ops.linear(x, w, b)
    ref = F.linear(_round_bf16(x).double(), _round_bf16(w).double(), torch.from_numpy(b).double()).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = F.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b))
    np.testing.assert_allclose(out, auto.float().numpy(), rtol=1e-2, atol=5e-2)
    assert not _C.set_bf16_operands(False)  # restored


def test_bf16_training_converges_like_float32():
    """A short run on real Fashion-MNIST images: the bfloat16 run's losses follow the float32
    run's closely and end as low; the weights stay float32."""
    images = trugrade.read_idx(f"{FASHION}/train-images-idx3-ubyte.gz")[:512].reshape(512, 1, 28, 28)
    labels = trugrade.read_idx(f"{FASHION}/train-labels-idx1-ubyte.gz")[:512].astype(np.int64)
    losses = {}
    for bf16 in (False, True):
        model = models.create("fashioncnn", num_classes=10, in_channels=1, input_size=28, seed=4)
        trainer = _C.Trainer(model._c, images, labels, batch_size=64, epochs=3, optimizer="adamw", lr=2e-3,
                             mean=[0.286], std=[0.353], bf16=bf16)
        losses[bf16] = [trainer.run_epoch() for _ in range(3)]
        assert all(v.dtype == np.float32 for v in model.state_dict().values() if v.dtype.kind == "f")
    assert losses[True] != losses[False]
    assert losses[True][-1] < 0.6 * losses[True][0]
    np.testing.assert_allclose(losses[True], losses[False], rtol=0.05)


# --------------------------------------------------------------------------- gradient accumulation


def _float_data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, n).astype(np.int64)


def _smallcnn():
    return models.create("smallcnn", num_classes=10, in_channels=1, input_size=28, seed=7, dropout=0.0)


@pytest.mark.parametrize("clip", [0.0, 0.05])
def test_accumulating_k_batches_equals_one_batch_of_k_times_b(clip):
    """Without batchnorm, the mean of k batch gradients of b samples is the gradient of one
    batch of k * b: one optimizer step of each gives the same weights (clipping acts on the
    mean gradient, as clipping after loss / k in PyTorch does)."""
    images, labels = _float_data(4 * 8)
    results = []
    for batch, accumulate in ((8, 4), (32, 1)):
        model = _smallcnn()
        trainer = _C.Trainer(model._c, images, labels, batch_size=batch, accumulate=accumulate, epochs=1,
                             shuffle=False, optimizer="sgd", lr=0.1, grad_clip_norm=clip)
        trainer.run_epoch()
        assert trainer.state()[1]["optimizer_steps"] == 1
        results.append(_state(model))
    for k in results[0]:
        np.testing.assert_allclose(results[0][k], results[1][k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_accumulation_windows_restart_each_epoch_and_average_a_short_last_window():
    """3 batches per epoch with accumulate 2: windows [0, 1] and [2] in every epoch, each
    the mean of its batch gradients (checked against loss_and_grads and a numpy SGD)."""
    images, labels = _float_data(3 * 8, seed=1)
    model = _smallcnn()
    reference = _smallcnn()
    trainer = _C.Trainer(model._c, images, labels, batch_size=8, accumulate=2, epochs=2, shuffle=False,
                         optimizer="sgd", lr=0.05)
    weights = _state(reference)
    for epoch in range(2):
        for window in ([0, 1], [2]):
            grads = None
            for b in window:
                reference.load_state_dict(weights)
                _, g = reference.loss_and_grads(images[8 * b:8 * b + 8], labels[8 * b:8 * b + 8])
                grads = {k: v.copy() for k, v in g.items()} if grads is None else {k: grads[k] + g[k] for k in g}
            weights = {k: (v - np.float32(0.05) * grads[k] / len(window) if k in grads else v)
                       for k, v in weights.items()}
        trainer.run_epoch()
        assert trainer.state()[1]["optimizer_steps"] == 2 * (epoch + 1)
    got = _state(model)
    for k in weights:
        np.testing.assert_allclose(got[k], weights[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_bf16_operand_rounding_is_round_to_nearest_even_like_torch():
    """x @ I with operands rounded: every output is x rounded to bfloat16 exactly as torch's
    cast rounds it (ties to even, tiny and huge values), on the vector path and its tail."""
    rng = np.random.default_rng(3)
    ties = np.float32(1.0) + np.float32(2.0 ** -8) * np.arange(1, 8, 2, dtype=np.float32)
    x = np.concatenate([rng.standard_normal(53).astype(np.float32) * 1e3, ties, -ties,
                        np.float32([1e-39, -3e-40, 3.3e38, 1.0 + 2.0 ** -9, 0.0])])
    x = np.resize(x, (3, 37)).astype(np.float32)
    eye = np.eye(37, dtype=np.float32)
    with _bf16_operands():
        out = trugrade.ops.linear(x, eye)
    np.testing.assert_array_equal(out, _round_bf16(x).numpy())


def test_an_interrupt_waits_for_the_accumulation_window_and_resume_is_bit_identical():
    """An interrupt mid-epoch stops as an accumulation window starts (no gradient pending);
    the checkpoint tensors (EMA, live weights, optimizer) resume a bf16 run bit-identically."""
    import threading
    from trugrade.train import checkpoint_tensors, restore_checkpoint
    images, labels = _float_data(64 * 8, seed=2)
    options = dict(batch_size=8, accumulate=3, epochs=2, optimizer="sgd", lr=0.02, momentum=0.9, ema_decay=0.7,
                   bf16=True, seed=5)

    def fresh():
        model = _smallcnn()
        return model, _C.Trainer(model._c, images, labels, **options)

    model_a, trainer_a = fresh()
    trainer_a.run_epoch()
    trainer_a.run_epoch()
    model_b, trainer_b = fresh()
    timer = threading.Timer(0.05, _C.interrupt)
    timer.start()
    try:
        trainer_b.run_epoch(catch_sigint=False)
        interrupted = False
    except KeyboardInterrupt:
        interrupted = True
    timer.join()
    step = trainer_b.progress()["step_in_epoch"]
    if interrupted:
        assert step % 3 == 0 and 0 < step < 64
    tensors, counters = checkpoint_tensors(model_b, trainer_b)
    model_c, trainer_c = fresh()
    restore_checkpoint(model_c, trainer_c, tensors, counters)
    while trainer_c.progress()["epoch"] < 2:
        trainer_c.run_epoch()
    final_a, _ = checkpoint_tensors(model_a, trainer_a)
    final_c, _ = checkpoint_tensors(model_c, trainer_c)
    assert set(final_a) == set(final_c)
    for k in final_a:
        np.testing.assert_array_equal(final_a[k], final_c[k], err_msg=k)
