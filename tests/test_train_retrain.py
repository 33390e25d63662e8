"""Phase 4a in plain torch (train/retrain.py) and the weights' moving average (train/ema.py)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lighttrack.arch import resolve
from lighttrack.models import StaticTracker
from lighttrack.models.static import StaticClassifier
from lighttrack.train.config import OptimConfig, RetrainStageConfig, RunConfig
from lighttrack.train.ema import ModelEma
from lighttrack.train.retrain import copy_backbone, train_classifier


class _Wrapped(nn.Module):  # what DistributedDataParallel looks like from outside
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def test_ema_averages_floats_and_copies_integer_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ModelEma(_Wrapped(model), 0.75)  # the wrapper is looked through
    old = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model.train()(torch.randn(4, 3))  # BN statistics move, num_batches_tracked becomes 1
    ema.update(model)
    new = model.state_dict()
    for k, v in ema.state_dict().items():
        if v.dtype.is_floating_point:
            assert torch.allclose(v, 0.75 * old[k] + 0.25 * new[k]), k
        else:
            assert torch.equal(v, new[k]), k
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    with pytest.raises(ValueError, match="ema decay"):
        ModelEma(model, 1.0)


def _loader(n: int = 8, classes: int = 3) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, 3, 32, 32, generator=g), torch.arange(n) % classes), batch_size=4)


def _cfg(**kw) -> RetrainStageConfig:
    return RetrainStageConfig(epochs=2, batch_size=4, steps_per_epoch=2, eval_batches=1,
                              optim=OptimConfig(name="sgd", lr=0.01), **kw)


def test_train_classifier_keeps_the_ema_copy_and_resumes_from_its_state():
    torch.manual_seed(0)
    arch = resolve("lighttrack-mobile")
    model = StaticClassifier(arch.backbone, 3, 0.0)
    reports: list[tuple[dict, dict | None]] = []
    metrics, kept = train_classifier(model, _loader(), _loader(), _cfg(ema_decay=0.5), RunConfig(amp="off"),
                                     lambda m, s=None: reports.append((m, s)))
    states = [s for _, s in reports if s is not None]
    assert [s["epoch"] for s in states] == [0, 1] and metrics["global_step"] == 4
    assert kept is not model and all(torch.equal(a, b) for a, b in zip(kept.state_dict().values(),
                                                                     states[-1]["ema"].values()))
    assert 0.0 <= metrics["top1"] <= 1.0
    # a restart from the first epoch's state trains the second epoch only
    torch.manual_seed(0)
    again = StaticClassifier(arch.backbone, 3, 0.0)
    later: list = []
    m2, _ = train_classifier(again, _loader(), None, _cfg(ema_decay=0.5), RunConfig(amp="off"),
                             lambda m, s=None: later.append((m, s)), state=states[0])
    assert [s["epoch"] for _, s in later if s is not None] == [1] and m2["global_step"] == 4
    # without an EMA the trained model itself is kept
    _, plain = train_classifier(StaticClassifier(arch.backbone, 3, 0.0), _loader(), None, _cfg(ema_decay=0.0),
                                RunConfig(amp="off"), lambda m, s=None: None)
    assert isinstance(plain, StaticClassifier)


def test_copy_backbone_moves_the_classifiers_backbone_into_the_tracker():
    torch.manual_seed(0)
    arch = resolve("lighttrack-mobile")
    classifier, tracker = StaticClassifier(arch.backbone, 3, 0.0), StaticTracker.build(arch)
    copy_backbone(tracker, classifier)
    src = classifier.backbone.state_dict()
    assert all(torch.equal(v, src[k]) for k, v in tracker.backbone.state_dict().items())


def test_pareto_front_and_progress_plots(tmp_path):
    from lighttrack.search.pareto import best_so_far, pareto_front, plot_pareto, plot_progress

    rows = [{"ao": 0.5, "macs": 300, "params": 2}, {"ao": 0.4, "macs": 200, "params": 1},
            {"ao": 0.4, "macs": 250, "params": 1}, {"ao": 0.6, "macs": 500, "params": 3}]
    assert pareto_front(rows) == [rows[1], rows[0], rows[3]]  # rows[2]: same AO as rows[1] at more MACs
    # by params alone rows[1] and rows[2] tie: neither beats the other, both stay
    assert pareto_front(rows, keys=("params",)) == [rows[1], rows[2], rows[0], rows[3]]
    assert best_so_far([0.2, 0.1, 0.3]).tolist() == [0.2, 0.2, 0.3] and len(best_so_far([])) == 0
    # The line joins the front of what is plotted (AO vs MACs): rows[0] is on the
    # three-objective front (fewest params for its AO) but not on the plotted one if a
    # candidate with more params has its AO at fewer MACs.
    cheaper = {"ao": 0.55, "macs": 280, "params": 4}
    drawn = plot_pareto(rows + [cheaper], pareto_front(rows + [cheaper]), tmp_path / "front.png", [("b", 400)],
                        baseline=0.3)
    assert rows[0] in pareto_front(rows + [cheaper]) and rows[0] not in drawn
    assert drawn == [rows[1], cheaper, rows[3]]
    plot_progress({"b": [r["ao"] for r in rows]}, tmp_path / "progress.png", baseline=0.3, metric="ao")
    assert (tmp_path / "front.png").stat().st_size > 1000 and (tmp_path / "progress.png").stat().st_size > 1000
