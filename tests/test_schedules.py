"""Learning-rate schedules of phases 1, 2 and 4 with the paper's values (docs/method.md §7, §8, §11)."""
import math

import pytest
import torch

from lighttrack.config import load
from lighttrack.train.config import PretrainConfig, RetrainConfig, ScheduleConfig, SupernetConfig
from lighttrack.train.schedules import build_optimizer, lr_at, param_groups, set_lr


def test_phase1_linear_annealing_from_0_5():
    cfg = load(PretrainConfig, "configs/pretrain.yaml")
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == ("sgd", 0.5, 0.9, 4e-5)
    assert cfg.epochs == 120
    f = lambda t: lr_at(t, cfg.optim.lr, cfg.epochs, cfg.schedule)
    assert f(0) == pytest.approx(0.5)
    assert f(60) == pytest.approx(0.25)
    assert f(120) == pytest.approx(0.0, abs=1e-12)


def test_phase2_warmup_then_log_decay():
    cfg = load(SupernetConfig, "configs/supernet.yaml")
    assert (cfg.optim.momentum, cfg.optim.weight_decay, cfg.epochs) == (0.9, 1e-4, 30)
    assert (cfg.backbone_freeze_epochs, cfg.backbone_lr_mult) == (10, 0.1)
    f = lambda t: lr_at(t, cfg.optim.lr, cfg.epochs, cfg.schedule)
    assert f(0) == pytest.approx(1e-2)
    assert f(2.5) == pytest.approx(2e-2)
    assert f(5) == pytest.approx(3e-2)
    assert f(30) == pytest.approx(1e-4)
    # logarithmic: halfway through the decay is the geometric mean
    assert f(17.5) == pytest.approx(math.sqrt(3e-2 * 1e-4))


def test_phase4_retrain_and_finetune():
    cfg = load(RetrainConfig, "configs/retrain.yaml")
    r, ft = cfg.retrain, cfg.finetune
    assert (r.optim.name, r.optim.lr, r.optim.momentum, r.optim.alpha, r.optim.weight_decay) == \
        ("rmsprop", 0.064, 0.9, 0.9, 1e-5)
    assert (r.epochs, r.model.dropout, r.autoaugment, r.ema_decay > 0) == (500, 0.2, True, True)
    g = lambda t: lr_at(t, r.optim.lr, r.epochs, r.schedule)
    assert g(0) == pytest.approx(0.0) and g(3) == pytest.approx(0.064)
    assert g(3 + 497 / 2) == pytest.approx(0.032)  # cosine halfway
    assert g(500) == pytest.approx(0.0, abs=1e-12)
    h = lambda t: lr_at(t, ft.optim.lr, ft.epochs, ft.schedule)
    assert ft.epochs == 50
    assert h(0) == pytest.approx(2e-2) and h(5) == pytest.approx(1e-1) and h(50) == pytest.approx(2e-4)


def test_backbone_group_runs_at_lr_mult():
    net = torch.nn.Module()
    net.backbone = torch.nn.Linear(2, 2)
    net.head = torch.nn.Linear(2, 1)
    opt = build_optimizer(param_groups(net, 0.1), load(SupernetConfig).optim)
    set_lr(opt, 0.03)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"backbone": pytest.approx(0.003), "head": pytest.approx(0.03)}


def test_adamw_takes_the_schedule_per_group_and_its_own_eps():
    """optim.name adamw (small-compute configs): decoupled weight decay, torch's eps (not the
    RMSProp field's 1e-3), the backbone group at its multiplier after set_lr."""
    from lighttrack.train.config import OptimConfig

    net = torch.nn.Module()
    net.backbone = torch.nn.Linear(2, 2)
    net.head = torch.nn.Linear(2, 1)
    opt = build_optimizer(param_groups(net, 0.1), OptimConfig(name="adamw", lr=1e-3, weight_decay=1e-4))
    assert isinstance(opt, torch.optim.AdamW)
    assert all(g["eps"] == 1e-8 and g["weight_decay"] == 1e-4 for g in opt.param_groups)
    set_lr(opt, 1e-3)
    assert {g["name"]: g["lr"] for g in opt.param_groups} == {"backbone": pytest.approx(1e-4), "head": pytest.approx(1e-3)}


def test_bad_schedule_is_a_clear_error():
    # refused where the config loads, naming the key ...
    with pytest.raises(ValueError, match="schedule.decay: 'exp' is not one of"):
        load(SupernetConfig, overrides=["schedule.decay=exp"])
    with pytest.raises(ValueError, match="schedule.final_lr: 0.0; log decay needs final_lr > 0"):
        load(SupernetConfig, overrides=["schedule.decay=log", "schedule.final_lr=0"])
    # ... and by the schedule itself for a config built in code
    with pytest.raises(ValueError, match="schedule.decay"):
        lr_at(1.0, 0.1, 10, ScheduleConfig(decay="exp"))
    with pytest.raises(ValueError, match="log decay"):
        lr_at(9.0, 0.1, 10, ScheduleConfig(decay="log", final_lr=0.0))
