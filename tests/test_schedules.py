import math

import pytest
import torch

from reference_models.training.schedules import cosine_lr, cosine_lr_factor, temperature


@pytest.mark.parametrize("step, expected", [
    (0, 1e-3),
    # Half-way down the cosine: the mean of the two ends.
    (25_000, 1.25e-6 + 0.5 * (1e-3 - 1.25e-6)),
    (50_000, 1.25e-6),
    (100_000, 1.25e-6),
])
def test_cosine_lr_paper_values(step, expected):
    assert cosine_lr(step) == pytest.approx(expected, rel=1e-12)


def test_cosine_lr_is_monotone_then_flat():
    values = [cosine_lr(t) for t in range(0, 60_001, 1_000)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[-1] == values[-11] == 1.25e-6


def test_cosine_lr_matches_torch_cosine_annealing_during_the_anneal():
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=1e-3)
    torch_sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100, eta_min=1.25e-6)
    for step in range(100):
        assert opt.param_groups[0]["lr"] == pytest.approx(cosine_lr(step, cosine_steps=100))
        opt.step()
        torch_sched.step()


def test_cosine_lr_factor_drives_lambda_lr():
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([param], lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lr_factor(lr=1e-3, cosine_steps=10))
    seen = []
    for _ in range(15):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([cosine_lr(t, cosine_steps=10) for t in range(15)])
    assert seen[-1] == pytest.approx(1.25e-6)


@pytest.mark.parametrize("step", [0, 25_000, 50_000, 100_000])
def test_temperature_paper_values(step):
    assert temperature(step) == pytest.approx(math.exp(-1e-5 * step))


def test_temperature_floor():
    assert temperature(10**7, rate=1e-5, minimum=0.05) == 0.05
    assert temperature(0, minimum=0.05) == 1.0


def test_schedules_reject_negative_steps():
    with pytest.raises(ValueError, match="step must be non-negative"):
        cosine_lr(-1)
    with pytest.raises(ValueError, match="step must be non-negative"):
        temperature(-1)


def test_periodic_cosine_follows_torch_past_its_period():
    # The authors' baselines step CosineAnnealingLR(T_max=50k) for 100k steps: the rate
    # climbs back to its start at 2 * T_max.
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=1e-3)
    torch_sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40, eta_min=1.25e-6)
    for step in range(130):
        expected = opt.param_groups[0]["lr"]
        assert cosine_lr(step, cosine_steps=40, after="periodic") == pytest.approx(
            expected, rel=1e-9, abs=1e-15), step
        opt.step()
        torch_sched.step()
    assert cosine_lr(80, cosine_steps=40, after="periodic") == pytest.approx(1e-3)
    assert cosine_lr(80, cosine_steps=40) == 1.25e-6


def test_hold_and_periodic_agree_during_the_anneal():
    assert all(cosine_lr(t, cosine_steps=50) == cosine_lr(t, cosine_steps=50, after="periodic")
               for t in range(51))


def test_cosine_after_must_be_known():
    with pytest.raises(ValueError, match="after must be 'hold' or 'periodic': got 'restart'"):
        cosine_lr(0, after="restart")
    with pytest.raises(ValueError, match="after must be"):
        cosine_lr_factor(after="restart")
