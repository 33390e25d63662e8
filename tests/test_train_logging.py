"""The training loop's device settings change speed, not results: values are read off the
device only on logged steps (run.log_every), and run.channels_last changes the layout only."""
from __future__ import annotations

import pytest
import torch

from lighttrack.config import load
from lighttrack.models import TrackSupernet
from lighttrack.train.config import SupernetConfig
from lighttrack.train.tracking import train_supernet
from tests.test_train_frozen import _batches


def _run(log_every: int, *extra: str) -> tuple[list[dict], dict]:
    torch.manual_seed(0)
    cfg = load(SupernetConfig, "configs/supernet_micro.yaml",
               ["epochs=2", "backbone_freeze_epochs=0", "steps_per_epoch=3", "eval.num_paths=0",
                "largest_warmup_epochs=0", f"run.log_every={log_every}", *extra])
    steps: list[dict] = []
    metrics = train_supernet(TrackSupernet(), torch.utils.data.DataLoader(_batches(2), batch_size=2), cfg,
                             lambda m, s=None: s is None and steps.append(m))
    return steps, metrics


def test_epoch_means_do_not_depend_on_the_logging_cadence():
    every, every_step = _run(4), _run(1)
    assert [s["global_step"] for s in every[0]] == list(range(1, 7))  # every step is still reported
    logged = [s["global_step"] for s in every[0] if "loss" in s]
    assert logged == [4]
    assert all("pairs_per_s" in s for s in every[0] if "loss" in s)
    assert all("loss" in s for s in every_step[0])
    for key in ("train_loss", "train_cls", "train_reg"):
        assert every[1][key] == pytest.approx(every_step[1][key], rel=1e-6)
    assert every[0][3]["loss"] == pytest.approx(every_step[0][3]["loss"], rel=1e-6)  # the same step's value


def test_channels_last_trains_the_same_numbers():
    plain, nhwc = _run(1), _run(1, "run.channels_last=true")
    assert [s["arch"] for s in plain[0]] == [s["arch"] for s in nhwc[0]]
    for a, b in zip(plain[0], nhwc[0]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
