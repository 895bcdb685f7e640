"""The autograd graph from Python: gradients against torch.autograd, gradient
accumulation, replanning on a new input shape, determinism across thread counts,
and Ctrl-C during a long run."""
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

import trugrade


def build_chain(shape=(4, 3)):
    """y = relu(x + w1) + (x + w1) + w2: a node used twice, two parameters."""
    g = trugrade.Graph()
    x = g.input("x", shape)
    w1 = g.param("layer1.weight", shape)
    w2 = g.param("layer2.bias", shape[-1:])
    a = g.op("add", [x, w1])
    r = g.op("relu", [a])
    s = g.op("add", [r, a])
    y = g.op("add", [s, w2])
    return g, x, w1, w2, y


def torch_chain(x, w1, w2):
    a = x + w1
    return torch.relu(a) + a + w2


def test_gradients_match_torch_autograd():
    rng = np.random.default_rng(0)
    x, w1, w2 = (rng.standard_normal(s).astype(np.float32) for s in [(4, 3), (4, 3), (3,)])
    g, xi, w1i, w2i, y = build_chain()
    g.set_value(w1i, w1)
    g.set_value(w2i, w2)
    g.plan(loss=y)
    g.feed(xi, x)
    g.run(training=True, backward=True)
    tx, tw1, tw2 = (torch.from_numpy(v).requires_grad_(True) for v in (x, w1, w2))
    out = torch_chain(tx, tw1, tw2)
    out.backward(torch.ones_like(out))
    np.testing.assert_allclose(g.value(y).numpy(), out.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(g.grad(w1i).numpy(), tw1.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(g.grad(w2i).numpy(), tw2.grad.numpy(), rtol=1e-6)
    assert g.names() == {"x": 0, "layer1.weight": 1, "layer2.bias": 2}


def test_parameter_gradients_accumulate_until_zeroed():
    g, xi, w1i, _, y = build_chain()
    g.plan(loss=y)
    g.feed(xi, np.ones((4, 3), np.float32))
    g.run(training=True, backward=True)
    once = g.grad(w1i).numpy().copy()
    g.run(training=True, backward=True)
    np.testing.assert_array_equal(g.grad(w1i).numpy(), 2 * once)
    g.zero_grad()
    assert not g.grad(w1i).numpy().any()


def test_new_input_shape_replans_and_bad_shape_is_refused():
    g = trugrade.Graph()
    x = g.input("x", (2, 5))
    b = g.param("b", (5,))
    y = g.op("relu", [g.op("add", [x, b])])
    small = g.plan(loss=y)
    g.feed(x, np.full((7, 5), -1.0, np.float32))
    g.run(training=True, backward=True)
    assert g.value(y).shape == (7, 5)
    assert g.memory()["arena_bytes"] > small
    with pytest.raises(trugrade.ShapeError, match="broadcast"):
        g.feed(x, np.zeros((7, 4), np.float32))
    g.feed(x, np.ones((7, 5), np.float32))
    g.run()
    assert g.value(y).shape == (7, 5)


def test_parameter_view_is_zero_copy_and_outlives_graph():
    g = trugrade.Graph()
    w = g.param("w", (3,))
    g.set_value(w, np.array([1, 2, 3], np.float32))
    view = np.asarray(g.value(w))
    del g
    np.testing.assert_array_equal(view, [1, 2, 3])


def test_same_result_for_any_thread_count():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 257)).astype(np.float32)
    results = []
    for threads in (1, 2):
        trugrade.set_num_threads(threads)
        g, xi, w1i, w2i, y = build_chain((64, 257))
        g.set_value(w1i, rng.standard_normal((64, 257)).astype(np.float32) * 0 + 0.1)
        g.plan(loss=y)
        g.feed(xi, x)
        g.run(training=True, backward=True)
        results.append((g.value(y).numpy().tobytes(), g.grad(w2i).numpy().tobytes()))
    trugrade.set_num_threads(os.cpu_count() or 1)
    assert results[0] == results[1]


def test_ctrl_c_stops_a_long_run_and_leaves_the_graph_usable():
    g = trugrade.Graph()
    x = g.input("x", (1 << 21,))
    node = x
    for _ in range(4000):
        node = g.op("add", [node, x])
    g.plan()
    g.feed(x, np.ones(1 << 21, np.float32))
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    start = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        g.run()
    elapsed = time.perf_counter() - start
    assert elapsed < 0.3 + 1.0, f"Ctrl-C took {elapsed - 0.3:.2f} s to stop the run"
    small = trugrade.Graph()
    a = small.input("a", (3,))
    out = small.op("relu", [a])
    small.feed(a, np.array([-1, 0, 2], np.float32))
    small.run()
    np.testing.assert_array_equal(small.value(out).numpy(), [0, 0, 2])


def test_reading_a_reused_activation_is_refused_unless_kept():
    g, xi, _, _, y = build_chain()
    a = 3  # x + w1, overwritten by later steps
    g.plan(loss=y)
    g.feed(xi, np.ones((4, 3), np.float32))
    g.run(training=True, backward=True)
    with pytest.raises(ValueError, match="keep"):
        g.value(a)
    g.keep(a)
    g.run(training=True, backward=True)
    np.testing.assert_array_equal(g.value(a).numpy(), np.ones((4, 3), np.float32))
