"""Tuning the tracker's post-processing for one network: its config, the ranges searched,
and one setting's score. ``ray_jobs/tune_tracker.py`` runs the settings as Ray Tune trials
(Nevergrad draws them) and logs them to MLflow."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lighttrack.arch import resolve
from lighttrack.config import Count, PosInt, from_dict
from lighttrack.models.static import StaticTracker
from lighttrack.tracker.evaluation import evaluate_split, open_split
from lighttrack.tracker.params import TrackerParams

__all__ = ["SPACE", "TuneTrackerConfig", "score_setting"]

# Search ranges around the published (VOT-2019) and released values.
SPACE = {"penalty_k": (0.001, 0.2), "window_influence": (0.1, 0.6), "lr": (0.2, 0.9)}


@dataclass
class TuneTrackerConfig:
    """What a tuning runs with; every flag of the job is sugar for ``--set KEY=VALUE``."""

    dataset: str = ""  # dataset root (GOT-10k layout or the embedded one)
    split: str = "val"
    max_sequences: Count = 0  # 0 = the whole split
    arch: str = ""  # preset name or architecture string
    checkpoint: str = ""  # local weights file ("": fresh weights, for smoke tests)
    tracker: str = "vot2019"  # starting preset/YAML for the untuned fields
    num_samples: PosInt = 16
    out: str = ""  # YAML file that receives the best TrackerParams
    seed: Count = 0


def score_setting(setting: dict, state: dict, arch_text: str, dataset_args: dict, base: dict) -> dict:
    """GOT-10k scores of the network ``state`` of ``arch_text`` tracking ``open_split(**dataset_args)``
    with the TrackerParams ``base`` updated by ``setting`` (one thread: trials run side by side)."""
    torch.set_num_threads(1)
    net = StaticTracker.build(resolve(arch_text))
    net.load_state_dict(state)
    params = from_dict(TrackerParams, {**base, **setting})
    return evaluate_split(net.eval(), open_split(**dataset_args), None, params)  # scored in memory
