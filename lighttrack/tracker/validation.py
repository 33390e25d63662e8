"""A tracker scored on validation sequences by one metric: GOT-10k AO or VOT EAO.

The search's fitness, the phase-2/4 validation and the model card all score this way, so
``eval.metric`` means the same everywhere:

* ``ao``: one pass over GOT-10k-layout sequences (``evaluation.evaluate_split``, in
  lockstep), average overlap;
* ``eao``: the VOT supervised experiment with re-initialisation over VOT-layout
  sequences (``vot.run_supervised``), expected average overlap over [46, 291].

Both come with the same figure of the tracker that stays at its start box, on the same
frames (``baseline_fitness``). Sequences are read and checked once, by
:func:`open_validation`; :func:`score` tracks them for one network and scores the boxes
in memory (result files only when asked for).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lighttrack.data.fs import DataError
from lighttrack.tracker.params import TrackerParams

__all__ = ["Metric", "METRICS", "Validation", "open_validation", "score", "check_validation"]

Metric = Literal["ao", "eao"]
METRICS = ("ao", "eao")


@dataclass
class Validation:
    metric: str
    reader: Any  # a GOT-10k reader (ao) or a VotDataset (eao), cut as asked
    sequences: list  # every sequence, read and checked

    @property
    def frames(self) -> int:
        return sum(len(s.frames) for s in self.sequences)


def open_validation(root: str, split: str = "val", metric: str = "ao", max_sequences: int = 0,
                    frames: int = 0) -> Validation:
    """The sequences that score trackers: ``root``/``split`` in GOT-10k layout (ao) or the
    VOT sequences folder ``root`` (eao; ``split`` unused), the first ``max_sequences`` of
    them (0 = all), each cut to its first ``frames`` frames (0 = all)."""
    if metric == "eao":
        from lighttrack.tracker.tracker import first_box
        from lighttrack.tracker.vot import VOT2019, open_vot

        reader = _VotFirstFrames(open_vot(root, max_sequences), frames) if frames else open_vot(root, max_sequences)
        sequences = [reader.sequence(i) for i in range(len(reader))]
        for seq in sequences:
            try:
                first_box(seq.boxes[0], *seq.size)
            except ValueError as e:
                raise DataError(f"sequence {seq.name}: {e}") from None
        longest = max(len(s) for s in sequences)
        if longest <= VOT2019.eao_low:  # the expected-overlap curve never reaches the interval
            raise DataError(f"{root}: EAO averages sequence lengths [{VOT2019.eao_low}, {VOT2019.eao_high}] but the "
                            f"longest sequence{' (cut to ' + str(frames) + ' frames)' if frames else ''} has "
                            f"{longest} frames: use longer sequences or fewer cut frames")
        return Validation(metric, reader, sequences)
    if metric != "ao":
        raise ValueError(f"metric: {metric!r} is not one of {METRICS}")
    from lighttrack.data.readers import Got10k
    from lighttrack.tracker.evaluation import read_split

    reader = Got10k(root, split)
    if max_sequences:
        reader = Got10k(root, split, reader.sequence_names[:max_sequences])
    if frames:
        reader = _FirstFrames(reader, frames)
    return Validation(metric, reader, read_split(reader))


def score(net: Any, val: Validation, params: TrackerParams, out_dir: str | Path | None = None,
          batch: int | str = "auto") -> dict:
    """Track ``val`` with ``net`` (a module with ``template``/``search``, or a runtime net),
    scored from the boxes in memory; with ``out_dir`` the result files are written there too.

    Returns the protocol's scores plus ``metric``, ``fitness`` (its AO or EAO) and
    ``baseline_fitness``. ``val``'s sequences are not read again."""
    if val.metric == "eao":
        from lighttrack.tracker.tracker import Tracker
        from lighttrack.tracker.vot import evaluate_vot

        s = evaluate_vot(Tracker(net, params), val.sequences, out_dir, plot=False)
        return {**s, "metric": "eao", "fitness": float(s["eao"]), "baseline_fitness": float(s["baseline_eao"])}
    from lighttrack.tracker.evaluation import evaluate_split

    s = evaluate_split(net, val.reader, out_dir, params, protocol="got10k", plot=False, batch=batch,
                       sequences=val.sequences)
    return {**s, "metric": "ao", "fitness": float(s["ao"]), "baseline_fitness": float(s["baseline_ao"])}


class _FirstFrames:
    """A GOT-10k reader cut to the first ``frames`` frames of every sequence."""

    def __init__(self, reader: Any, frames: int) -> None:
        self.reader, self.frames = reader, frames
        self.sequence_names = reader.sequence_names
        self.root = getattr(reader, "root", None)

    def __len__(self) -> int:
        return len(self.reader)

    def sequence(self, i: int) -> Any:
        seq, n = self.reader.sequence(i), self.frames
        meta = {k: (v[:n] if k == "cover" and hasattr(v, "__len__") else v) for k, v in seq.meta.items()}
        return dataclasses.replace(seq, frames=seq.frames[:n], boxes=seq.boxes[:n],
                                   absent=seq.absent[:n], meta=meta)


class _VotFirstFrames(_FirstFrames):
    """A VOT dataset cut to the first ``frames`` frames of every sequence."""

    def sequence(self, i: int) -> Any:
        seq, n = self.reader.sequence(i), self.frames
        return dataclasses.replace(seq, frames=seq.frames[:n], regions=seq.regions[:n],
                                   tags={t: f[:n] for t, f in seq.tags.items()})


def check_validation(metric: str, root: str, split: str, tracker: str, where: str = "",
                     root_key: str = "root") -> None:
    """The cheap checks of a validation config, run before any work (its ``check_inputs``):
    the GOT-10k listing of ``root/split`` (metric ao) or the VOT ``list.txt`` of ``root``
    (eao), and the tracker file's values. Errors name the dotted key under ``where``."""
    from lighttrack.config import ConfigError, dotted
    from lighttrack.data.check import check_source_quick
    from lighttrack.tracker.params import load_params
    from lighttrack.tracker.vot import open_vot

    if metric != "eao":
        check_source_quick("got10k", root, split, dotted(where, root_key))
    else:
        try:
            open_vot(root)
        except DataError as e:
            raise DataError(f"{dotted(where, root_key)} (metric eao: a VOT sequences folder): {e}") from None
    try:
        load_params(tracker)
    except ConfigError as e:
        raise ConfigError(f"{dotted(where, 'tracker')}: {e}") from None
