"""Online tracking, benchmark evaluation, metrics and export of found trackers."""
from lighttrack.tracker.params import PRESETS, TrackerParams, load_params, preset
from lighttrack.tracker.tracker import Tracker

__all__ = ["Tracker", "TrackerParams", "PRESETS", "preset", "load_params"]
