import math

import pytest
import torch
from torch import nn

from motionssl.models.optim import (
    LARS,
    build_optimizer,
    cosine_schedule,
    mcpnet_lr,
    moquad_lr,
    param_groups,
    warmup_cosine,
)


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)


def test_param_groups_split_weights_from_biases_and_norms():
    model = Toy()
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and decay["lars"]
    assert no_decay["weight_decay"] == 0.0 and not no_decay["lars"]
    assert [p.shape for p in decay["params"]] == [model.linear.weight.shape]
    assert {id(p) for p in no_decay["params"]} == {id(model.linear.bias), id(model.norm.weight), id(model.norm.bias)}


def test_lars_matches_hand_computed_steps():
    """Two steps on a 2x2 weight and a bias, computed by hand from the formula."""
    lr, momentum, wd, eta = 0.5, 0.9, 0.1, 0.01
    w = nn.Parameter(torch.tensor([[3.0, 0.0], [0.0, 4.0]], dtype=torch.float64))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0, -1.0], dtype=torch.float64))
    optimizer = LARS(
        [{"params": [w], "weight_decay": wd, "lars": True}, {"params": [b], "weight_decay": 0.0, "lars": False}],
        lr=lr, momentum=momentum, trust_coefficient=eta,
    )
    g_w = torch.tensor([[0.1, 0.2], [0.3, 0.4]], dtype=torch.float64)
    g_b = torch.tensor([0.5, 0.25], dtype=torch.float64)

    w_ref, b_ref, v_w, v_b = w.detach().clone(), b.detach().clone(), torch.zeros(2, 2), torch.zeros(2)
    for _ in range(2):
        w.grad, b.grad = g_w.clone(), g_b.clone()
        optimizer.step()
        # by hand: u = g + wd w, trust = eta ||w|| / ||u||, v = m v + trust u, w -= lr v
        u = g_w + wd * w_ref
        trust = eta * math.sqrt((w_ref ** 2).sum().item()) / math.sqrt((u ** 2).sum().item())
        v_w = momentum * v_w + trust * u
        w_ref = w_ref - lr * v_w
        v_b = momentum * v_b + g_b  # bias: no decay, no trust ratio
        b_ref = b_ref - lr * v_b
        torch.testing.assert_close(w.detach(), w_ref)
        torch.testing.assert_close(b.detach(), b_ref)


def test_lars_trust_ratio_is_one_for_zero_weights():
    w = nn.Parameter(torch.zeros(2, 2))
    optimizer = LARS([w], lr=1.0, momentum=0.0, trust_coefficient=0.001)
    w.grad = torch.ones(2, 2)
    optimizer.step()
    torch.testing.assert_close(w.detach(), -torch.ones(2, 2))


def test_build_optimizer():
    model = Toy()
    lars = build_optimizer("lars", model, lr=moquad_lr(256), weight_decay=1e-6)
    assert isinstance(lars, LARS) and lars.param_groups[0]["lr"] == pytest.approx(3.2)
    sgd = build_optimizer("sgd", model, lr=mcpnet_lr(256), weight_decay=5e-4, nesterov=True)
    assert isinstance(sgd, torch.optim.SGD)
    assert [g["weight_decay"] for g in sgd.param_groups] == [5e-4, 0.0]
    with pytest.raises(ValueError, match="adam.*lars.*sgd"):
        build_optimizer("rmsprop", model, lr=1.0, weight_decay=0.0)


def test_learning_rate_scaling_rules():
    assert moquad_lr(256) == pytest.approx(3.2) and moquad_lr(64) == pytest.approx(0.8)
    assert mcpnet_lr(32) == pytest.approx(0.1) and mcpnet_lr(256) == pytest.approx(0.8)


def test_warmup_cosine_shape():
    total, warmup = 110, 10
    assert warmup_cosine(0, total, warmup) == pytest.approx(0.1)
    assert warmup_cosine(9, total, warmup) == pytest.approx(1.0)
    assert warmup_cosine(10, total, warmup) == pytest.approx(1.0)
    assert warmup_cosine(60, total, warmup) == pytest.approx(0.5)
    assert warmup_cosine(110, total, warmup) == pytest.approx(0.0)
    assert warmup_cosine(500, total, warmup, final_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine(0, 10) == pytest.approx(1.0)  # no warm-up


def test_cosine_schedule_steps_the_learning_rate():
    optimizer = build_optimizer("sgd", Toy(), lr=2.0, weight_decay=0.0)
    scheduler = cosine_schedule(optimizer, total_steps=20, warmup_steps=4)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:4] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_schedule(optimizer, total_steps=5, warmup_steps=6)


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_adam_and_adamw_keep_the_weight_decay_groups_and_take_momentum_as_beta1(name, cls):
    model = Toy()
    optimizer = build_optimizer(name, model, lr=1e-3, weight_decay=0.05, momentum=0.8)
    assert type(optimizer) is cls
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert decay["betas"] == (0.8, 0.999) and decay["lr"] == 1e-3
    assert [p.shape for p in decay["params"]] == [model.linear.weight.shape]


def test_adamw_step_matches_the_formula():
    """One AdamW step: w <- w - lr * (wd * w + m_hat / (sqrt(v_hat) + eps)), m_hat = g, v_hat = g^2."""
    w = nn.Parameter(torch.tensor([[1.0, -2.0]], dtype=torch.float64))
    model = nn.Module()
    model.w = w
    optimizer = build_optimizer("adamw", model, lr=0.1, weight_decay=0.5, momentum=0.9)
    w.grad = torch.tensor([[0.3, 0.4]], dtype=torch.float64)
    optimizer.step()
    expected = torch.tensor([[1.0, -2.0]], dtype=torch.float64) * (1 - 0.1 * 0.5) - 0.1 * torch.sign(w.grad)
    torch.testing.assert_close(w.detach(), expected, atol=1e-6, rtol=0)
