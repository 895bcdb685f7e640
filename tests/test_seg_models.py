"""Output parity of the segmentation architectures (csrc/models/unet.c, deeplab.c, fpn.c) with
the same architectures in plain PyTorch (tests/torch_seg_models.py, same parameter names):
trugrade's weights are loaded into the torch model, BatchNorm running statistics calibrated in
torch on the batch and loaded back (both directions of state_dict transfer), then

- eval forward: |ours - torch| <= 1e-3 * max|torch| + 1e-5 (float32 both; measured 1e-6
  relative for most, 2e-4 for fpn-resnet50 whose BN statistics come from 8 values);
- loss_and_grads in eval mode (running statistics) and training mode (batch statistics)
  against torch float64: the loss to rtol 1e-4 and EVERY parameter's gradient to
  1e-4 of that gradient's own scale (max |float64 gradient| of the tensor), or 4x torch
  float32's own error of that tensor where that is larger (only DeepLabV3+'s ASPP tensors:
  torch float32 is 1e-4 from float64 there in eval mode, and 8e-3 on the pooling branch's
  BatchNorm over 4 values in training mode); measured worst 6e-6..3e-5 for U-Net and FPN,
  7e-5 for DeepLabV3+ outside the ASPP; the test checks that its bound catches the largest
  gradient off by 0.1%.
  NOTE: with the models' own BatchNorm biases (0), a few pre-activations sit within float32
  rounding of zero and which ReLU flips there is luck: torch float32 itself is then 1e-7..3e-2
  away from float64 (relative L2), so no tight bound holds. The gradient comparison therefore
  runs with every BatchNorm bias set to 3 before the calibration: each ReLU after a BatchNorm
  then sees values about 3 standard deviations from zero unless its input is far out in the
  tail, every op still runs (ReLU masks, max-pool routing, BatchNorm's batch-statistics
  backward, SE gates, upsampling, concatenation, the losses), and float32 matches float64
  to rounding. The forward comparison keeps the models' own weights.
Models are created with dropout=0 (dropout is random, so it is the one thing not compared)."""
import copy

import numpy as np
import pytest
import torch

import torch_seg_models as T
import trugrade.models as M

COMBINED = {"dice": 0.4, "focal": 0.4, "wce": 0.2, "alpha": 0.25, "smooth": 0.5}
DECISIVE_BN_BIAS = 3.0
GRAD_RTOL = 1e-4

CONFIGS = [
    ("unet_se-ce", "unet_se", lambda: T.UNet(11, 2, se=True, dropout=0.0),
     dict(in_channels=11, num_classes=2, input_size=64), None, None),
    ("unet_se-combined", "unet_se", lambda: T.UNet(11, 2, se=True, dropout=0.0),
     dict(in_channels=11, num_classes=2, input_size=64), COMBINED, [0.14, 1.86]),
    ("unet-bilinear-ce", "unet", lambda: T.UNet(3, 3, bilinear=True),
     dict(in_channels=3, num_classes=3, input_size=32, upsample="bilinear"), None, None),
    ("deeplabv3plus-resnet34-ce", "deeplabv3plus", lambda: T.DeepLabV3Plus(11, 2, "resnet34", dropout=0.0),
     dict(in_channels=11, num_classes=2, input_size=64), None, None),
    ("deeplabv3plus-resnet18-combined", "deeplabv3plus", lambda: T.DeepLabV3Plus(3, 3, "resnet18", dropout=0.0),
     dict(in_channels=3, num_classes=3, input_size=64, encoder="resnet18"), COMBINED, [0.3, 1.2, 1.5]),
    ("fpn-resnet18-ce", "fpn", lambda: T.FPN(11, 2, "resnet18"),
     dict(in_channels=11, num_classes=2, input_size=64, encoder="resnet18"), None, None),
    ("fpn-resnet50-combined", "fpn", lambda: T.FPN(3, 3, "resnet50"),
     dict(in_channels=3, num_classes=3, input_size=64, encoder="resnet50"), COMBINED, [0.2, 1.0, 1.8]),
]


def _torch_loss(logits, target, loss, class_weights):
    if loss is None:
        return T.combined_loss(logits, target)
    weights = None if class_weights is None else torch.tensor(class_weights, dtype=logits.dtype)
    return T.combined_loss(logits, target, ce=loss["wce"], dice=loss["dice"], focal=loss["focal"],
                           class_weights=weights, alpha=loss.get("alpha"), smooth=loss.get("smooth", 1.0))


def _grads(module):
    return {k: p.grad.double().numpy() for k, p in module.named_parameters()}


def _gradient_errors(ours, reference):
    """{name: max |ours - reference| / scale} per parameter, scale = max |reference| of the
    tensor, floored at 1e-4 of the largest over all tensors (a gradient that is 0 in exact
    arithmetic, e.g. a BatchNorm bias followed by conv and BatchNorm, is compared absolutely)."""
    floor = 1e-4 * max(np.abs(g).max() for g in reference.values())
    return {name: np.abs(np.asarray(ours[name], np.float64) - ref).max() / max(np.abs(ref).max(), floor)
            for name, ref in reference.items()}


def _calibrate(reference, xt):
    """Running statistics = this batch's (cumulative average of one batch), momentum back to 0.1."""
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
            module.reset_running_stats()
    reference.train()
    with torch.no_grad():
        reference(xt)
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 0.1


@pytest.mark.parametrize("config", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_matches_pytorch(config):
    _, arch, make_torch, options, loss, class_weights = config
    model = M.create(arch, dropout=0.0, loss=loss, class_weights=class_weights, **options)
    reference = make_torch()
    assert model.parameter_count() == sum(p.numel() for p in reference.parameters())
    own = model.state_dict()
    reference.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in own.items() if not k.startswith("loss.")})

    rng = np.random.default_rng(0)
    # NOTE: DeepLabV3+'s ASPP pooling branch has a BatchNorm over 1x1 maps, that is over the batch
    # alone: with 2 samples its training-mode gradient is 0 in exact arithmetic and float32
    # rounding noise divided by the std of 2 values elsewhere, so it trains on batches of 4 here
    n = 4 if arch == "deeplabv3plus" else 2
    c, s, classes = options["in_channels"], options["input_size"], options["num_classes"]
    x = rng.standard_normal((n, c, s, s)).astype(np.float32)
    y = (rng.random((n, s, s)) < 0.25).astype(np.int64) * rng.integers(1, classes, (n, s, s))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    # eval forward with the model's own weights
    _calibrate(reference, xt)
    model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()}, strict=False)
    reference.eval()
    expected = reference(xt).detach().numpy()
    got = model.forward(x)
    assert got.shape == (n, classes, s, s)
    assert np.abs(got - expected).max() <= 1e-3 * np.abs(expected).max() + 1e-5

    # loss and every gradient against torch float64, eval and training mode, with decisive ReLUs
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.fill_(DECISIVE_BN_BIAS)
    _calibrate(reference, xt)
    model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()}, strict=False)
    reference64 = copy.deepcopy(reference).double()
    for train in (False, True):
        grads = {}
        for tag, module, dtype in (("f32", reference, torch.float32), ("f64", reference64, torch.float64)):
            module.train(train)
            module.zero_grad()
            value = _torch_loss(module(xt.to(dtype)), yt, loss, class_weights)
            value.backward()
            grads[tag] = {k: p.grad.double().numpy() for k, p in module.named_parameters()}
        got_loss = model._c.step(x, y, train=train)
        got_grads = {k: v.numpy() for k, v in model._c.tensors(grads=True).items()}
        np.testing.assert_allclose(got_loss, value.item(), rtol=1e-4)
        errors = _gradient_errors(got_grads, grads["f64"])
        # NOTE: torch float32's own error of a tensor raises its bound above GRAD_RTOL only where
        # float32 itself cannot do better (DeepLabV3+'s ASPP: torch float32 1.3e-4 from float64)
        bounds = {k: max(GRAD_RTOL, 4 * e) for k, e in _gradient_errors(grads["f32"], grads["f64"]).items()}
        worst = max(errors, key=lambda k: errors[k] / bounds[k])
        print(f"{config[0]} {'train' if train else 'eval'}: worst gradient error {errors[worst]:.1e} ({worst}, bound "
              f"{bounds[worst]:.1e}), median {np.median(list(errors.values())):.1e}")
        assert errors[worst] <= bounds[worst], (train, worst, errors[worst], bounds[worst])
        # the bound has teeth: the largest gradient 0.1% off fails it
        name = max(grads["f64"], key=lambda k: np.abs(grads["f64"][k]).max())
        wrong = dict(got_grads, **{name: got_grads[name] * 1.001})
        assert _gradient_errors(wrong, grads["f64"])[name] > bounds[name]


def test_unet_se_parameter_count():
    model = M.create("unet_se", num_classes=2, in_channels=11, input_size=64)
    assert model.parameter_count() == 31_289_310
    breakdown = model.parameter_breakdown()
    assert sum(breakdown.values()) == 31_289_310 and list(breakdown)[0] == "enc1" and list(breakdown)[-1] == "outc"

    def level(cin, cout, se):   # two 3x3 convs without bias, two BatchNorms, SE squeezing by 16
        hidden = cout // 16
        return 9 * cin * cout + 9 * cout * cout + 4 * cout + (2 * cout * hidden + hidden + cout if se else 0)

    assert breakdown["enc1"] == level(11, 64, True) == 44_036
    assert breakdown["bottleneck"] == level(512, 1024, True)
    assert breakdown["dec1"] == 4 * 1024 * 512 + 512 + level(1024, 512, True)    # 2x2 transposed conv + level
    assert breakdown["dec4"] == 4 * 128 * 64 + 64 + level(128, 64, False)
    assert breakdown["head"] == 9 * 64 * 64 + 2 * 64 and breakdown["outc"] == 64 * 2 + 2
    assert model.parameter_breakdown(2)["dec1.se"] == 2 * 512 * 32 + 32 + 512
    # the classic U-Net (milesial/Pytorch-UNet, transposed convs) with 3 inputs and 1 class
    assert M.create("unet", num_classes=1, in_channels=3, input_size=64).parameter_count() == 31_037_633


def test_load_backbone_takes_torchvision_names():
    model = M.create("fpn", num_classes=2, in_channels=3, input_size=64, encoder="resnet18")
    trunk = T.ResNetTrunk("resnet18", 3)
    state = {k: v.numpy() + 1.0 for k, v in trunk.state_dict().items()}
    state["fc.weight"] = np.zeros((1000, 512), np.float32)
    missing = model.load_backbone(state)
    assert missing == []
    np.testing.assert_array_equal(model.state_dict()["backbone.layer3.1.conv2.weight"],
                                  state["layer3.1.conv2.weight"])


def test_masks_of_a_new_batch_and_size():
    model = M.create("unet", num_classes=3, in_channels=1, input_size=32, loss=COMBINED)
    rng = np.random.default_rng(1)
    assert model.forward(rng.standard_normal((3, 1, 48, 64))).shape == (3, 3, 48, 64)
    loss, grads = model.loss_and_grads(rng.standard_normal((1, 1, 32, 32)), rng.integers(0, 3, (1, 32, 32)))
    assert np.isfinite(loss) and np.isfinite(grads["outc.weight"]).all()
    with pytest.raises(Exception, match="integer"):
        model.loss_and_grads(rng.standard_normal((1, 1, 32, 32)), rng.random((1, 32, 32)))


def test_class_weights_from_masks():
    masks = np.zeros((2, 7, 4), np.int64)
    masks.reshape(-1)[::14] = 1   # 1 debris pixel in 14
    np.testing.assert_allclose(M.class_weights_from_masks(masks, 2), [1 / 7, 13 / 7], rtol=1e-6)


def test_classification_keeps_working_at_any_batch():
    model = M.create("resnet18", num_classes=10, in_channels=1, input_size=28)
    rng = np.random.default_rng(2)
    assert model.forward(rng.standard_normal((5, 1, 28, 28))).shape == (5, 10)
    loss, _ = model.loss_and_grads(rng.standard_normal((3, 1, 28, 28)), [1, 2, 3])
    assert np.isfinite(loss)
