"""Tracker hyper-parameters and their named presets (docs/method.md §13)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from lighttrack import config

__all__ = ["TrackerParams", "PRESETS", "preset", "load_params", "check_tracker"]


@dataclass(frozen=True)
class TrackerParams:
    """Online tracker settings; the template crop is always geometry.TEMPLATE_SIZE (128)."""

    penalty_k: config.NonNegFloat = 0.007  # scale/ratio change penalty strength
    window_influence: config.Probability = 0.225  # weight of the Hanning window in pscore
    lr: config.Probability = 0.616  # box-size update rate (times penalty * score of the chosen cell)
    context: config.NonNegFloat = 0.5  # context amount p = context * (w + h) around the target
    search_size: int = 256  # search crop side (score map search_size // 16)
    large_search_size: int = 288  # search crop side for small targets (score map 18x18)
    small_target_ratio: config.Probability = 0.004  # first box area / frame area below this -> large search
    large_search: bool = True  # allow the large search region for small targets
    min_size: config.PosFloat = 10.0  # lower clamp of the box side in frame pixels

    def __post_init__(self) -> None:
        for name in ("search_size", "large_search_size"):
            v = getattr(self, name)
            if v <= 0 or v % 16:
                raise config.ConfigError(f"tracker.{name} must be a positive multiple of 16, got {v}")


PRESETS: dict[str, TrackerParams] = {
    # Published VOT-2019 settings (paper).
    "vot2019": TrackerParams(penalty_k=0.007, window_influence=0.225, lr=0.616),
    # Defaults of the released test code.
    "released": TrackerParams(penalty_k=0.062, window_influence=0.38, lr=0.765),
}


def preset(name: str) -> TrackerParams:
    """A named preset (``vot2019`` or ``released``)."""
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise config.ConfigError(f"unknown tracker preset {name!r}; known: {sorted(PRESETS)}") from None


def check_tracker(name_or_path: str) -> None:
    """Refuse a ``tracker`` config value that is neither a preset nor a YAML file name (a
    typo in a preset name), without reading any file: configs are checked where they load,
    and a relative file name may only exist where the job started."""
    if name_or_path.lower() not in PRESETS and not name_or_path.endswith((".yaml", ".yml")):
        raise config.ConfigError(f"tracker: {name_or_path!r} is neither a preset ({', '.join(sorted(PRESETS))}) "
                                 "nor a .yaml file of tracker parameters")


def load_params(name_or_path: str | Path | None = "vot2019", overrides: Iterable[str] = ()) -> TrackerParams:
    """A preset name or a YAML file of TrackerParams fields, plus ``key=value`` overrides."""
    overrides = list(overrides)
    if name_or_path is None:
        return config.load(TrackerParams, None, overrides)
    if str(name_or_path).lower() in PRESETS:
        base = config.to_dict(preset(str(name_or_path)))
        data = {**base, **config.parse_overrides(overrides)}
        return config.from_dict(TrackerParams, data)
    if not Path(name_or_path).is_file():
        raise config.ConfigError(f"tracker {str(name_or_path)!r} is neither a preset ({', '.join(sorted(PRESETS))}) "
                                 "nor an existing YAML file of tracker parameters")
    return config.load(TrackerParams, name_or_path, overrides)

