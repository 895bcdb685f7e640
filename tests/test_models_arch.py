"""The zoo's torchvision architectures: parameter counts and names, numerical parity
with plain-PyTorch reimplementations (tests/torch_models.py), freezing, and loading
torchvision-named safetensors weights.

Tolerances: eval forward logits within rtol 1e-3 / atol 1e-4 of PyTorch; the loss of
a training step within 1e-4 relative; each parameter gradient within 1e-3 of PyTorch
float64's, relative to that tensor's largest magnitude, or at most twice PyTorch
float32's own distance from float64 (see the training-step test). Running statistics
after one training step: rtol 1e-4, atol 1e-5.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import trugrade
import trugrade.safetensors
from trugrade import models
from trugrade.errors import TrugradeValueError
import torch_models

# torchvision's published counts (weights meta "num_params") at 1000 classes, 3 channels
TORCHVISION_COUNTS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "efficientnet_b0": 5_288_548,
    "densenet121": 7_978_856, "vgg16": 138_357_544, "vgg16_bn": 138_365_992, "mobilenet_v3_small": 2_542_856,
}

# Keys and shapes known from torchvision's source, independent of tests/torch_models.py.
TORCHVISION_KEYS = {
    "efficientnet_b0": {
        "features.0.0.weight": (32, 3, 3, 3), "features.0.1.running_var": (32,),
        "features.1.0.block.0.0.weight": (32, 1, 3, 3), "features.1.0.block.1.fc1.weight": (8, 32, 1, 1),
        "features.1.0.block.1.fc2.bias": (32,), "features.1.0.block.2.0.weight": (16, 32, 1, 1),
        "features.2.0.block.0.0.weight": (96, 16, 1, 1), "features.2.0.block.2.fc1.weight": (4, 96, 1, 1),
        "features.6.3.block.1.0.weight": (1152, 1, 5, 5), "features.7.0.block.3.1.bias": (320,),
        "features.8.0.weight": (1280, 320, 1, 1), "classifier.1.weight": (1000, 1280),
    },
    "mobilenet_v3_small": {
        "features.0.0.weight": (16, 3, 3, 3), "features.1.block.0.0.weight": (16, 1, 3, 3),
        "features.1.block.1.fc1.weight": (8, 16, 1, 1), "features.1.block.2.0.weight": (16, 16, 1, 1),
        "features.2.block.0.0.weight": (72, 16, 1, 1), "features.4.block.2.fc1.weight": (24, 96, 1, 1),
        "features.9.block.2.fc2.weight": (288, 72, 1, 1), "features.12.0.weight": (576, 96, 1, 1),
        "classifier.0.weight": (1024, 576), "classifier.3.weight": (1000, 1024),
    },
    "densenet121": {
        "features.conv0.weight": (64, 3, 7, 7), "features.norm0.num_batches_tracked": (),
        "features.denseblock1.denselayer1.norm1.weight": (64,),
        "features.denseblock1.denselayer6.conv1.weight": (128, 224, 1, 1),
        "features.denseblock1.denselayer6.conv2.weight": (32, 128, 3, 3),
        "features.transition1.conv.weight": (128, 256, 1, 1), "features.denseblock3.denselayer24.norm1.bias": (992,),
        "features.transition3.conv.weight": (512, 1024, 1, 1), "features.norm5.running_mean": (1024,),
        "classifier.weight": (1000, 1024),
    },
    "vgg16": {
        "features.0.weight": (64, 3, 3, 3), "features.2.weight": (64, 64, 3, 3), "features.28.bias": (512,),
        "classifier.0.weight": (4096, 25088), "classifier.3.weight": (4096, 4096), "classifier.6.bias": (1000,),
    },
    "vgg16_bn": {
        "features.0.weight": (64, 3, 3, 3), "features.1.running_mean": (64,), "features.3.weight": (64, 64, 3, 3),
        "features.40.weight": (512, 512, 3, 3), "features.41.num_batches_tracked": (),
        "classifier.6.weight": (1000, 4096),
    },
    "resnet50": {
        "conv1.weight": (64, 3, 7, 7), "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer4.2.conv3.weight": (2048, 512, 1, 1), "fc.weight": (1000, 2048),
    },
}

ARCHS = list(TORCHVISION_COUNTS)


def _state(model):
    return {k: np.array(v) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("arch", ARCHS)
def test_count_names_and_shapes_match_torchvision(arch):
    ours = models.create(arch)
    assert ours.parameter_count() == TORCHVISION_COUNTS[arch]
    reference = torch_models.BUILDERS[arch]()
    assert sum(p.numel() for p in reference.parameters()) == TORCHVISION_COUNTS[arch]
    expected = [(k, tuple(v.shape)) for k, v in reference.state_dict().items()]
    got = [(k, tuple(v.shape)) for k, v in ours.state_dict().items()]
    assert got == expected  # same keys, shapes and order as torchvision's state_dict
    for key, shape in TORCHVISION_KEYS.get(arch, {}).items():
        assert tuple(ours.state_dict()[key].shape) == shape, key
    del ours, reference


@pytest.mark.parametrize("arch,first,head", [
    ("efficientnet_b0", "features.0.0.weight", "classifier.1.weight"),
    ("mobilenet_v3_small", "features.0.0.weight", "classifier.3.weight"),
    ("densenet121", "features.conv0.weight", "classifier.weight"),
    ("resnet18", "conv1.weight", "fc.weight"),
])
@pytest.mark.parametrize("in_channels", [1, 11])
def test_in_channels_and_num_classes_adapt_first_and_last_layer(arch, first, head, in_channels):
    model = models.create(arch, num_classes=7, in_channels=in_channels, input_size=32)
    state = model.state_dict()
    assert state[first].shape[1] == in_channels
    assert state[head].shape[0] == 7
    out = model.forward(np.random.default_rng(0).standard_normal((2, in_channels, 32, 32)).astype(np.float32))
    assert out.shape == (2, 7) and np.isfinite(out).all()


def test_densenet_small_input_stem():
    small = models.create("densenet121", num_classes=10, input_size=32)
    assert small.state_dict()["features.conv0.weight"].shape == (64, 3, 3, 3)
    large = models.create("densenet121", num_classes=10, input_size=96)
    assert large.state_dict()["features.conv0.weight"].shape == (64, 3, 7, 7)
    forced = models.create("densenet121", num_classes=10, input_size=32, small_input=0)
    assert forced.state_dict()["features.conv0.weight"].shape == (64, 3, 7, 7)


def test_unknown_arch_lists_the_new_ones():
    with pytest.raises(TrugradeValueError, match="efficientnet_b0.*densenet121.*vgg16.*mobilenet_v3_small"):
        models.create("efficientnet_b9")
    for arch in ARCHS:
        assert arch in models.architectures()


# ---- parity with the PyTorch reimplementations ----

def _randomize(model, seed):
    """Random weights, BatchNorm affine and running statistics (so that parity tests see
    more than the init's ones and zeros); returns the state as numpy copies."""
    rng = np.random.default_rng(seed)
    state = model.state_dict()
    for name, value in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        if name.endswith("running_var"):
            value[...] = rng.uniform(0.5, 1.5, value.shape)
        elif name.endswith("running_mean") or name.endswith(".bias"):
            value[...] = rng.uniform(-0.1, 0.1, value.shape)
        elif value.ndim == 1:
            value[...] = rng.uniform(0.8, 1.2, value.shape)
        else:
            fan_in = int(np.prod(value.shape[1:]))
            value[...] = rng.standard_normal(value.shape) * np.sqrt(2.0 / fan_in)
    return _state(model)


def _torch_twin(arch, ours, **kw):
    reference = torch_models.BUILDERS[arch](**kw)
    reference.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in _state(ours).items()}, strict=True)
    return reference


PARITY = [
    ("resnet18", dict(small_input=1), dict(small_input=True)),
    ("resnet18", dict(small_input=0), dict(small_input=False)),
    ("efficientnet_b0", dict(dropout=0.0, drop_path=0.0), dict(dropout=0.0, drop_path=0.0)),
    ("mobilenet_v3_small", dict(dropout=0.0), dict(dropout=0.0)),
]


@pytest.mark.parametrize("arch,options,torch_options", PARITY,
                         ids=[f"{a}-{'-'.join(f'{k}{v}' for k, v in o.items())}" for a, o, _ in PARITY])
def test_eval_forward_matches_pytorch(arch, options, torch_options):
    ours = models.create(arch, num_classes=10, input_size=64, **options)
    _randomize(ours, 1)
    reference = _torch_twin(arch, ours, num_classes=10, **torch_options).eval()
    x = np.random.default_rng(2).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours.forward(x), expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("arch,options,torch_options", PARITY,
                         ids=[f"{a}-{'-'.join(f'{k}{v}' for k, v in o.items())}" for a, o, _ in PARITY])
def test_training_step_gradients_and_running_stats_match_pytorch(arch, options, torch_options):
    """One training step (batch statistics): loss, every gradient and the running
    statistics after it. Gradients are judged against PyTorch in float64: a training
    step of a deep net with batch statistics is ill-conditioned enough that PyTorch's
    own float32 gradients are a few percent off float64 on some tensors, so each of
    ours must be within 1e-3 of float64 (relative to the tensor's largest magnitude)
    or no more than twice as far off as PyTorch's float32."""
    ours = models.create(arch, num_classes=10, input_size=64, **options)
    _randomize(ours, 3)
    reference = _torch_twin(arch, ours, num_classes=10, **torch_options).train()
    exact = _torch_twin(arch, ours, num_classes=10, **torch_options).train().double()
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 3, 64, 64)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    loss, grads = ours.loss_and_grads(x, y)
    expected_loss = F.cross_entropy(reference(torch.from_numpy(x)), torch.from_numpy(y))
    expected_loss.backward()
    F.cross_entropy(exact(torch.from_numpy(x).double()), torch.from_numpy(y)).backward()
    assert abs(loss - expected_loss.item()) <= 1e-4 * abs(expected_loss.item()) + 1e-5
    named = dict(reference.named_parameters())
    assert set(grads) == set(named)
    bad = []
    for name, p in exact.named_parameters():
        truth = p.grad.numpy()
        scale = float(np.abs(truth).max()) or 1.0
        ours_error = float(np.abs(grads[name] - truth).max()) / scale
        torch_error = float(np.abs(named[name].grad.numpy() - truth).max()) / scale
        if ours_error > max(1e-3, 2 * torch_error):
            bad.append((name, ours_error, torch_error))
    assert not bad, f"gradients further from float64 than PyTorch float32's: {bad[:5]}"
    after = _state(ours)
    for name, buffer in reference.named_buffers():
        if name.endswith("running_mean") or name.endswith("running_var"):
            np.testing.assert_allclose(after[name], buffer.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("arch,size", [("densenet121", 32), ("vgg16_bn", 32)])
def test_eval_forward_matches_pytorch_large_archs(arch, size):
    ours = models.create(arch, num_classes=10, input_size=size)
    _randomize(ours, 5)
    kw = dict(small_input=True) if arch == "densenet121" else {}
    reference = _torch_twin(arch, ours, num_classes=10, **kw).eval()
    x = np.random.default_rng(6).standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours.forward(x), expected, rtol=1e-3, atol=1e-4)


# ---- freezing ----

def test_freeze_stem_and_layer1_resnet():
    model = models.create("resnet18", num_classes=10, input_size=32)
    assert model.freeze(["stem", "layer1"]) == 3 + 2 * 6  # conv1, bn1; two blocks of conv-bn-conv-bn
    frozen = model.frozen()
    assert frozen[:3] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert all(n.startswith(("conv1.", "bn1.", "layer1.")) for n in frozen)
    assert len(frozen) == 3 + sum(1 for n in model.state_dict() if n.startswith("layer1.") and
                                  not n.endswith(("running_mean", "running_var", "num_batches_tracked")))


def _train_one_step(model, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    optimizer = trugrade._C.Optimizer(model, "sgd", momentum=0.9, weight_decay=1e-4)
    before = _state(model)
    _, grads = model.loss_and_grads(x, y)
    optimizer.step(0.1)
    return before, grads, _state(model)


@pytest.mark.parametrize("arch,patterns", [
    ("resnet18", ["stem", "layer1"]),
    ("efficientnet_b0", ["features.0", "features.1.*", "features.2"]),
    ("mobilenet_v3_small", ["stem", "features.1"]),
])
def test_frozen_params_get_no_gradient_and_stay_unchanged(arch, patterns):
    model = models.create(arch, num_classes=10, input_size=32)
    model.freeze(patterns)
    frozen = set(model.frozen())
    assert frozen
    before, grads, after = _train_one_step(model)
    for name in before:
        moved = not np.array_equal(before[name], after[name])
        if name in frozen:
            assert not grads[name].any(), f"{name} is frozen but got a gradient"
            assert not moved, f"{name} is frozen but changed"
        elif name.endswith(("weight", "bias")):
            assert grads[name].any() or "bias" in name, f"{name} is trainable but got no gradient"
    # a frozen BatchNorm keeps its running statistics; a trainable one updates them
    stem_bn = "bn1" if arch == "resnet18" else "features.0.1"
    for stat in ("running_mean", "running_var"):
        assert np.array_equal(before[f"{stem_bn}.{stat}"], after[f"{stem_bn}.{stat}"])
    last_bn = {"resnet18": "layer4.1.bn2", "efficientnet_b0": "features.8.1",
               "mobilenet_v3_small": "features.12.1"}[arch]
    assert not np.array_equal(before[f"{last_bn}.running_mean"], after[f"{last_bn}.running_mean"])


def test_frozen_batchnorm_runs_in_eval_mode_in_training():
    """With every BatchNorm frozen, a training-mode forward equals the eval forward
    (no batch statistics), and unfreezing restores batch statistics."""
    model = models.create("resnet18", num_classes=10, input_size=32, dropout=0.0)
    _randomize(model, 7)
    x = np.random.default_rng(8).standard_normal((4, 3, 32, 32)).astype(np.float32)
    model.freeze("*bn*")
    model.freeze("*downsample.1*")
    np.testing.assert_array_equal(model.forward(x, train=True), model.forward(x))
    model.unfreeze()
    assert model.frozen() == []
    assert not np.allclose(model.forward(x, train=True), model.forward(x))


def test_freeze_matching_nothing_is_an_error():
    model = models.create("efficientnet_b0", num_classes=10, input_size=32)
    with pytest.raises(TrugradeValueError, match="matches no parameter.*features.0"):
        model.freeze("layer1")


def test_freeze_densenet_stages():
    model = models.create("densenet121", num_classes=10, input_size=32)
    model.freeze(["stem", "features.denseblock1", "features.transition1"])
    frozen = model.frozen()
    assert frozen[:3] == ["features.conv0.weight", "features.norm0.weight", "features.norm0.bias"]
    assert all(n.startswith(("features.conv0", "features.norm0", "features.denseblock1.", "features.transition1."))
               for n in frozen)


# ---- pretrained weights in torchvision's names ----

@pytest.mark.parametrize("arch,options,torch_options", [
    ("mobilenet_v3_small", {}, {}),
    ("efficientnet_b0", {}, {}),
    ("resnet18", dict(small_input=0), dict(small_input=False)),
])
def test_safetensors_with_torchvision_names_loads_and_matches(tmp_path, arch, options, torch_options):
    torch.manual_seed(0)
    reference = torch_models.BUILDERS[arch](num_classes=10, **torch_options)
    with torch.no_grad():  # non-trivial running statistics
        for name, buffer in reference.named_buffers():
            if name.endswith("running_mean"):
                buffer.uniform_(-0.1, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    path = tmp_path / f"{arch}.safetensors"
    trugrade.safetensors.save(path, {k: v.numpy() for k, v in reference.state_dict().items()})
    ours = models.create(arch, num_classes=10, input_size=64, **options)
    ours.load_state_dict(path)
    x = np.random.default_rng(9).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = reference.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours.forward(x), expected, rtol=1e-3, atol=1e-4)


def test_pretrained_head_swap_with_strict_false(tmp_path):
    """A 1000-class checkpoint into a 10-class model: drop the head, load the rest."""
    reference = torch_models.mobilenet_v3_small()
    state = {k: v.numpy() for k, v in reference.state_dict().items() if not k.startswith("classifier.3.")}
    path = tmp_path / "backbone.safetensors"
    trugrade.safetensors.save(path, state)
    ours = models.create("mobilenet_v3_small", num_classes=10, input_size=64)
    head_before = np.array(ours.state_dict()["classifier.3.weight"])
    ours.load_state_dict(path, strict=False)
    loaded = ours.state_dict()
    np.testing.assert_array_equal(loaded["features.3.block.1.0.weight"], state["features.3.block.1.0.weight"])
    np.testing.assert_array_equal(loaded["classifier.3.weight"], head_before)


# ---- stochastic depth, batch sizes, determinism ----

def test_efficientnet_stochastic_depth_is_training_only():
    x = np.random.default_rng(10).standard_normal((8, 3, 32, 32)).astype(np.float32)
    plain = models.create("efficientnet_b0", num_classes=10, input_size=32, dropout=0.0, drop_path=0.0)
    dropped = models.create("efficientnet_b0", num_classes=10, input_size=32, dropout=0.0)  # drop_path 0.2
    dropped.load_state_dict(_state(plain))
    np.testing.assert_array_equal(dropped.forward(x), plain.forward(x))
    assert not np.array_equal(dropped.forward(x, train=True), plain.forward(x, train=True))
    assert dropped.options["drop_path"] == -1.0 and plain.options["drop_path"] == 0.0


@pytest.mark.parametrize("batch", [1, 3, 5])
def test_any_batch_size_for_forward_step_and_memory(batch):
    model = models.create("mobilenet_v3_small", num_classes=10, input_size=32)
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    assert model.forward(x).shape == (batch, 10)
    if batch > 1:  # batch statistics need more than one value per channel at the 1x1 head
        loss, _ = model.loss_and_grads(x, rng.integers(0, 10, batch))
        assert np.isfinite(loss)
    assert model.memory(batch=batch + 4)["arena_bytes"] > 0
    assert model.forward(x).shape == (batch, 10)


def test_training_step_bit_identical_at_1_and_2_threads():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    results = []
    before = trugrade.get_num_threads()
    try:
        for threads in (1, 2):
            trugrade.set_num_threads(threads)
            model = models.create("efficientnet_b0", num_classes=10, input_size=32, seed=3)
            loss, grads = model.loss_and_grads(x, y)
            results.append((loss, grads, _state(model)))
    finally:
        trugrade.set_num_threads(before)
    (loss1, grads1, state1), (loss2, grads2, state2) = results
    assert loss1 == loss2
    for name in grads1:
        assert grads1[name].tobytes() == grads2[name].tobytes(), name
    for name in state1:
        assert state1[name].tobytes() == state2[name].tobytes(), name
