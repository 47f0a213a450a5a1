"""The original momentum rule, its difference from torch's SGD, and the learning-rate schedule."""

import numpy as np
import pytest
import torch

from reproduce.training.config import TrainConfig, hollywood2_finetune
from reproduce.training.optim import BlocksMomentum, build_optimizer, learning_rate, set_learning_rate


def _gradients(steps, shape=(5, 3), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(steps)]


def _run_torch(optimizer_cls, theta0, grads, rates, **kwargs):
    p = torch.nn.Parameter(torch.from_numpy(theta0.copy()))
    opt = optimizer_cls([p], lr=rates[0], **kwargs)
    for g, lr in zip(grads, rates, strict=True):
        set_learning_rate(opt, lr)
        p.grad = torch.from_numpy(g)
        opt.step()
    return p.detach().numpy()


def _numpy_blocks(theta0, grads, rates, mu):
    """v ← μv + ηg; θ ← θ − v, in float32 with the same roundings (docs/framework.md §3.3)."""
    theta, v = theta0.copy(), np.zeros_like(theta0)
    for g, lr in zip(grads, rates, strict=True):
        v = np.float32(mu) * v + np.float32(lr) * g
        theta = theta - v
    return theta


def _numpy_torch_sgd(theta0, grads, rates, mu):
    """torch's rule: b ← μb + g; θ ← θ − ηb (first step b = g), in float64."""
    theta, b = theta0.astype(np.float64), None
    for g, lr in zip(grads, rates, strict=True):
        b = g.astype(np.float64) if b is None else mu * b + g
        theta = theta - lr * b
    return theta


def test_blocks_momentum_matches_the_numpy_recurrence_exactly():
    theta0 = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    grads = _gradients(30)
    rates = [0.01] * 10 + [0.01 * 0.9**k for k in range(1, 21)]
    got = _run_torch(BlocksMomentum, theta0, grads, rates, momentum=0.9)
    np.testing.assert_array_equal(got, _numpy_blocks(theta0, grads, rates, 0.9))


def test_equals_torch_sgd_while_the_rate_is_constant():
    theta0 = np.random.default_rng(2).standard_normal((5, 3)).astype(np.float32)
    grads = _gradients(25, seed=3)
    rates = [0.05] * 25
    blocks = _run_torch(BlocksMomentum, theta0, grads, rates, momentum=0.9)
    sgd = _run_torch(torch.optim.SGD, theta0, grads, rates, momentum=0.9)
    np.testing.assert_allclose(blocks, sgd, rtol=0, atol=2e-6)


def test_differs_from_torch_sgd_after_a_decay():
    theta0 = np.random.default_rng(4).standard_normal((5, 3)).astype(np.float32)
    grads = _gradients(20, seed=5)
    rates = [0.05] * 10 + [0.005] * 10  # one decay by 10
    blocks = _run_torch(BlocksMomentum, theta0, grads, rates, momentum=0.9)
    sgd = _run_torch(torch.optim.SGD, theta0, grads, rates, momentum=0.9)
    np.testing.assert_allclose(sgd, _numpy_torch_sgd(theta0, grads, rates, 0.9), atol=2e-6)
    np.testing.assert_allclose(blocks, _numpy_blocks(theta0, grads, rates, 0.9), atol=0)
    # Blocks' velocity still carries the old rate: the two must part by far more than rounding.
    assert np.max(np.abs(blocks - sgd)) > 1e-2


def test_state_dict_round_trip_continues_the_same_trajectory():
    theta0 = np.random.default_rng(6).standard_normal((4,)).astype(np.float32)
    grads = _gradients(12, shape=(4,), seed=7)
    straight = _run_torch(BlocksMomentum, theta0, grads, [0.1] * 12, momentum=0.6)

    p = torch.nn.Parameter(torch.from_numpy(theta0.copy()))
    opt = BlocksMomentum([p], lr=0.1, momentum=0.6)
    for g in grads[:6]:
        p.grad = torch.from_numpy(g)
        opt.step()
    saved_state, saved_theta = opt.state_dict(), p.detach().clone()
    q = torch.nn.Parameter(saved_theta)
    opt2 = BlocksMomentum([q], lr=123.0, momentum=0.0)
    opt2.load_state_dict(saved_state)
    for g in grads[6:]:
        q.grad = torch.from_numpy(g)
        opt2.step()
    np.testing.assert_array_equal(q.detach().numpy(), straight)


def test_learning_rate_schedule_activitynet():
    cfg = TrainConfig(data="x.h5")
    expected = {0: 0.01, 2511: 0.01, 2512: 0.009, 2636: 0.009, 2637: 0.0081, 2761: 0.0081, 2762: 0.00729}
    for n, lr in expected.items():
        assert learning_rate(cfg, n) == pytest.approx(lr, rel=1e-12), n


def test_learning_rate_schedule_hollywood2_decays_every_iteration():
    cfg = hollywood2_finetune("h.h5", "c3d_fc6", "vgg_obj_fc8", None)
    assert learning_rate(cfg, 999) == pytest.approx(0.001)
    for n in (1000, 1001, 1500, 2499):
        assert learning_rate(cfg, n) == pytest.approx(0.001 * 0.999 ** (n - 999), rel=1e-12)


def test_build_optimizer_picks_the_rule():
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(build_optimizer(TrainConfig(data="x"), p), BlocksMomentum)
    opt = build_optimizer(TrainConfig(data="x", optimizer="torch", momentum=0.6, lr=0.3), p)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["momentum"] == 0.6 and opt.param_groups[0]["lr"] == 0.3
