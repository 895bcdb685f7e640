"""The memory plan's in-place steps and liveness (tg_op_def's backward_skips_* and
forward_in_place), gradients written fresh, and the fused batchnorm2d_silu: results must
not change, only memory. Each check compares against the unfused or accumulate path bit
for bit, and 1 against 2 threads."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import trugrade
from opcheck import rand, randn


def _bn_inputs(seed, shape=(4, 6, 9, 11)):
    c = shape[1]
    return [randn(*shape, seed=seed) * 2 + 0.5, randn(c, seed=seed + 1), randn(c, seed=seed + 2),
            randn(c, seed=seed + 3), rand(c, seed=seed + 4, low=0.5, high=2.0)]


def _with_threads(threads, fn):
    before = trugrade.get_num_threads()
    trugrade.set_num_threads(threads)
    try:
        return fn()
    finally:
        trugrade.set_num_threads(before)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm2d_silu_equals_batchnorm2d_then_silu_bit_for_bit(training):
    inputs = _bn_inputs(1)
    gy = randn(4, 6, 9, 11, seed=9)
    ops = trugrade.ops

    def fused():
        ins = [x.copy() for x in inputs]
        y = np.array(ops.batchnorm2d_silu(*ins, training=training))
        grads = ops.batchnorm2d_silu.backward(*[x.copy() for x in inputs], grad_output=gy, training=training)
        return [y] + [np.array(g) for g in grads if g is not None] + ins[3:]

    def pair():
        ins = [x.copy() for x in inputs]
        z = np.array(ops.batchnorm2d(*ins, training=training))
        y = np.array(ops.silu(z))
        (gz,) = ops.silu.backward(z, grad_output=gy)
        grads = ops.batchnorm2d.backward(*[x.copy() for x in inputs], grad_output=np.array(gz), training=training)
        return [y] + [np.array(g) for g in grads if g is not None] + ins[3:]

    one, two, reference = _with_threads(1, fused), _with_threads(2, fused), pair()
    assert len(one) == len(reference)
    for a, b, r in zip(one, two, reference):
        assert a.tobytes() == b.tobytes()
        assert a.tobytes() == r.tobytes()


def _block_graph(fused):
    """conv-free block: x -> batchnorm(+silu) -> mul by a parameter -> relu -> add x -> flatten -> sum."""
    g = trugrade.Graph()
    x = g.input("x", (3, 4, 6, 5))
    w = g.param("w", (4,))
    b = g.param("b", (4,))
    scale = g.param("scale", (4, 1, 1))
    ins = [x, w, b]
    if fused:
        h = g.op("batchnorm2d_silu", ins)
    else:
        h = g.op("silu", [g.op("batchnorm2d", ins)])
    h = g.op("relu", [g.op("mul", [h, scale])])
    h = g.op("add", [h, x])
    out = g.op("sum", [g.op("flatten", [h])])
    return g, x, [w, b, scale], out


@pytest.mark.parametrize("threads", [1, 2])
def test_graph_with_in_place_steps_matches_torch_and_the_unfused_graph(threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 6, 5)).astype(np.float32)
    values = [rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32),
              rng.standard_normal((4, 1, 1)).astype(np.float32)]
    results = []
    for fused in (True, False):
        g, xi, params, out = _block_graph(fused)
        for p, v in zip(params, values):
            g.set_value(p, v)
        g.keep(out)
        g.plan(loss=out)
        g.feed(xi, x)
        _with_threads(threads, lambda: g.run(training=True, backward=True))
        results.append([g.value(out).numpy().copy()] + [g.grad(p).numpy().copy() for p in params])
    for a, b in zip(*results):
        assert a.tobytes() == b.tobytes()
    tx = torch.from_numpy(x)
    tw, tb, ts = (torch.from_numpy(v).requires_grad_(True) for v in values)
    h = F.silu(F.batch_norm(tx, None, None, tw, tb, training=True))
    ref = (torch.relu(h * ts) + tx).sum()
    ref.backward()
    np.testing.assert_allclose(results[0][0], ref.detach().numpy(), rtol=1e-4)
    for got, want in zip(results[0][1:], (tw.grad, tb.grad, ts.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)


def test_in_place_steps_shrink_the_plan():
    """relu over a batchnorm output and add over a relu output share their input's memory."""
    def build(in_place_friendly):
        g = trugrade.Graph()
        x = g.input("x", (8, 16, 32, 32))
        w = g.param("w", (16,))
        b = g.param("b", (16,))
        h = g.op("batchnorm2d", [x, w, b])
        h = g.op("relu", [h])
        # the unfriendly variant reads the batchnorm output again after the relu
        h = g.op("add", [h, h if in_place_friendly else g.op("batchnorm2d", [x, w, b])])
        out = g.op("sum", [h])
        return g.plan(loss=out)
    one = 8 * 16 * 32 * 32 * 4
    assert build(True) < build(False)
    assert build(True) <= 5 * one


def test_models_plan_less_than_every_activation():
    model = trugrade.models.create("resnet18", num_classes=10, in_channels=3, input_size=32, seed=0)
    planned = model.memory(batch=8)["arena_bytes"]
    # a [8, 64, 32, 32] activation: keeping every one (7 per basic block) plans about 32 of
    # them; with relu and add in place about 20
    activation = 8 * 64 * 32 * 32 * 4
    assert planned < 24 * activation
