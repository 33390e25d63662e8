"""Phase 2 loop: the frozen backbone (weights AND BN statistics) does not change during the
frozen epochs, then trains; the heads train from the start (REFERENCE.md §1)."""
import torch

from lighttrack.config import load
from lighttrack.models import TrackSupernet
from lighttrack.train.config import SupernetConfig
from lighttrack.train.sampling import PathSampler
from lighttrack.train.tracking import train_tracking


def _batches(n: int, b: int = 2) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    items = []
    for _ in range(n * b):
        label = torch.zeros(8, 8)
        label[3:5, 3:5] = 1
        items.append({"template": torch.randn(3, 128, 128, generator=g),
                      "search": torch.randn(3, 128, 128, generator=g),  # 128 px search -> 8x8 maps
                      "cls_label": label, "reg_target": torch.rand(4, 8, 8, generator=g) * 40 + 1,
                      "reg_mask": label.clone()})
    return items


def _backbone(model) -> dict:
    return {k: v.clone() for k, v in model.backbone.state_dict().items()}


def test_frozen_backbone_unchanged_then_trains():
    torch.manual_seed(0)
    cfg = load(SupernetConfig, "configs/supernet_micro.yaml",
               ["epochs=2", "backbone_freeze_epochs=1", "steps_per_epoch=2", "eval.num_paths=0"])
    model = TrackSupernet()
    before = _backbone(model)
    heads_before = {k: v.clone() for k, v in model.cls_head.state_dict().items()}
    loader = torch.utils.data.DataLoader(_batches(2), batch_size=2)
    snapshots = []
    train_tracking(model, loader, cfg, cfg.run, lambda m, s=None: s is not None and snapshots.append(
        {k.removeprefix("backbone."): v.clone() for k, v in s["model"].items() if k.startswith("backbone.")}),
        sampler=PathSampler(0))
    after_frozen, after_thaw = snapshots
    assert all(torch.equal(before[k], after_frozen[k]) for k in before), "frozen backbone changed"
    assert any(not torch.equal(before[k], after_thaw[k]) for k in before if "running" not in k), \
        "backbone did not train after thawing"
    heads = model.cls_head.state_dict()
    assert any(not torch.equal(heads_before[k], heads[k]) for k in heads_before)
