"""Template/search pairs from several tracking datasets mixed with a per-dataset quota.

An epoch has ``sum(pairs_per_epoch)`` items. Item ``k`` of epoch ``e`` is fully determined by
``(seed, e, k)``: the epoch's interleaving of sources is a permutation drawn from
``(seed, e)`` and the pair itself (sequence, frames, augmentation) from
``np.random.default_rng((seed, e, k))``. So the data does not depend on the number of
DataLoader workers or on which worker draws which item. The epoch is ``set_epoch(e)``'s, or
travels with the index as ``dataset[(e, k)]``: that is how persistent DataLoader workers,
which keep their copy of the dataset, learn it (``lighttrack.train.common.make_loader``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np
from torch.utils.data import Dataset

from lighttrack.config import ConfigError, Count, dotted

from . import fs
from .check import check_reader, check_source_quick
from .fs import DataError
from .index import TrackingKind, StaleIndex, build_index, default_index, open_layout, parse_all, read_index, write_index
from .processing import PairProcessor, ProcessingConfig
from .readers import open_tracking
from .tracks import TrackReader

__all__ = ["SourceConfig", "PairDataConfig", "PairSource", "PairDataset", "OCEAN_MIX", "build_pair_dataset",
           "open_source", "index_sources"]

log = logging.getLogger(__name__)

# Ocean's training mix (docs/method.md §8): dataset -> (frame range, pairs per epoch).
# DET and COCO are still images: template and search come from the same frame.
OCEAN_MIX: dict[str, tuple[int, int]] = {
    "vid": (100, 110_000), "ytb": (3, 210_000), "got10k": (100, 160_000),
    "det": (0, 60_000), "coco": (0, 60_000),
}


@dataclass
class SourceConfig:
    """One tracking dataset in the mix."""
    root: str = "data/synth/got10k"  # dataset root: local path or pyarrow.fs URI
    kind: TrackingKind = "got10k"
    split: str = "train"  # split (GOT-10k, VID, DET: train/val; COCO: train2017; crop511: its JSON name)
    index: str = ""  # Parquet index (lighttrack data index); "" = <root>/.index/ if there, else read directly
    frame_range: Count = 100  # max |search frame - template frame|
    pairs_per_epoch: Count = 1000  # items drawn from this dataset per epoch


@dataclass
class PairDataConfig:
    """Tracking pairs for phase 2/4 training."""
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    seed: Count = 0  # base seed; items depend on (seed, epoch, index) only
    skip_bad: bool = False  # skip sequences with problems (with a warning) instead of refusing

    def validate(self) -> None:
        if not self.sources or sum(s.pairs_per_epoch for s in self.sources) == 0:
            raise ConfigError("sources: no source draws any pairs (pairs_per_epoch are all 0)")

    def check_inputs(self, where: str = "") -> None:
        """A listing per source that draws pairs (lighttrack.config.check_inputs)."""
        for i, sc in enumerate(self.sources):
            if sc.pairs_per_epoch:
                check_source_quick(sc.kind, sc.root, sc.split, dotted(where, f"sources[{i}]"))


@dataclass
class PairSource:
    reader: object  # a reader from lighttrack.data.readers
    frame_range: int
    pairs_per_epoch: int
    name: str = ""


class PairDataset(Dataset):
    """Map-style dataset of processed pairs (dicts of tensors, see PairProcessor)."""

    def __init__(self, sources: list[PairSource], processor: PairProcessor | None = None,
                 seed: int = 0, max_tries: int = 100):
        if not sources or sum(s.pairs_per_epoch for s in sources) <= 0:
            raise ValueError("PairDataset needs at least one source with pairs_per_epoch > 0")
        for s in sources:
            if len(s.reader) == 0:
                raise DataError(f"source {s.name or s.reader!r}: no sequences")
            if s.frame_range < 0:
                raise ValueError(f"source {s.name}: frame_range must be >= 0, got {s.frame_range}")
        self.sources, self.processor = sources, processor or PairProcessor()
        self.seed, self.max_tries, self.epoch = int(seed), max_tries, 0
        self._source_of: np.ndarray | None = None
        self._order_epoch = -1
        self._infos: dict[tuple[int, int], dict] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return sum(s.pairs_per_epoch for s in self.sources)

    def _source(self, index: int, epoch: int) -> int:
        if self._order_epoch != epoch:
            ids = np.repeat(np.arange(len(self.sources)), [s.pairs_per_epoch for s in self.sources])
            self._source_of = np.random.default_rng((self.seed, epoch)).permutation(ids)
            self._order_epoch = epoch
        return int(self._source_of[index])

    def _info(self, si: int, i: int) -> dict:
        key = (si, i)
        if key not in self._infos:
            self._infos[key] = self.sources[si].reader.get_sequence_info(i)
        return self._infos[key]

    def sample(self, index: int, epoch: int | None = None) -> tuple[int, int, int, int]:
        """(source, sequence, template frame, search frame) of item ``index`` of ``epoch``
        (default: this epoch)."""
        epoch = self.epoch if epoch is None else epoch
        si = self._source(index, epoch)
        src = self.sources[si]
        rng = np.random.default_rng((self.seed, epoch, index, 0))
        for _ in range(self.max_tries):
            i = int(rng.integers(len(src.reader)))
            visible = np.flatnonzero(self._info(si, i)["visible"])
            if len(visible) == 0:
                continue
            t = int(rng.choice(visible))
            near = visible[np.abs(visible - t) <= src.frame_range]
            return si, i, t, int(rng.choice(near))
        raise DataError(f"source {src.name}: no visible frame found in {self.max_tries} sequences")

    def __getitem__(self, index: int | tuple[int, int]) -> dict:
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        if not 0 <= index < len(self):
            raise IndexError(index)
        si, i, t, s = self.sample(index, epoch)
        reader = self.sources[si].reader
        boxes = self._info(si, i)["bbox"]
        proc = self.processor
        rz, rx = proc.reduction(boxes[t], search=False), proc.reduction(boxes[s], search=True)
        if t == s:  # one frame (DET, COCO): decoded once, at the finer of the two sizes
            rz = rx = min(rz, rx)
        frames = reader.get_frames(i, [t] if t == s else [t, s], [rz] if t == s else [rz, rx])
        z_img, x_img = frames[0], frames[-1]
        rng = np.random.default_rng((self.seed, epoch, index, 1))
        return proc(z_img, boxes[t] / rz, x_img, boxes[s] / rx, rng)


def open_source(sc: SourceConfig, skip_bad: bool = False):
    """The reader of one source: its index when it has one (opening costs the same whatever
    the number of frames), else the dataset read directly (every annotation, and for the
    GOT-10k/LaSOT/folder layouts every frame's existence checked)."""
    location = sc.index or default_index(sc.root, sc.kind, sc.split)
    if sc.index or fs.exists(location):
        return read_index(location, root=sc.root)
    if sc.kind not in ("got10k", "lasot", "folder"):
        tracks, _ = parse_all(open_layout(sc.kind, sc.root, sc.split), skip_bad=skip_bad)
        return TrackReader(sc.root, tracks, sc.kind)
    reader = open_tracking(sc.kind, sc.root, sc.split)
    problems = check_reader(reader, decode=False)
    if problems:
        listing = "\n".join(f"  {p}" for p in problems)
        if not skip_bad:
            raise DataError(f"{sc.root}: {len(problems)} problem(s); fix them or set "
                            f"skip_bad=true:\n{listing}")
        bad = {p.sequence for p in problems if p.sequence}
        if any(not p.sequence for p in problems):
            raise DataError(f"{sc.root}: problems outside any sequence:\n{listing}")
        log.warning("%s: skipping %d bad sequence(s): %s\n%s", sc.root, len(bad), sorted(bad), listing)
        reader = open_tracking(sc.kind, sc.root, sc.split, [n for n in reader.sequence_names if n not in bad])
    return reader


def build_pair_dataset(cfg: PairDataConfig) -> PairDataset:
    """Open every source (:func:`open_source`) and build the dataset.

    A source with problems (see :func:`lighttrack.data.check.check_reader`) is refused with
    every problem listed, or, with ``cfg.skip_bad``, its bad sequences are left out with a warning.
    """
    sources = [PairSource(open_source(sc, cfg.skip_bad), sc.frame_range, sc.pairs_per_epoch,
                          f"{sc.kind}:{sc.root}") for sc in cfg.sources]
    return PairDataset(sources, PairProcessor(cfg.processing), cfg.seed)


def _stale(location: str, root: str) -> bool:
    try:
        read_index(location, root=root).verify_sample()
        return False
    except StaleIndex as e:  # e.g. copied to a bucket along with its data: built again
        log.warning("%s; rebuilding it", e)
        return True


def index_sources(cfg: PairDataConfig, fallback: str = "", workers: int = 0) -> PairDataConfig:
    """``cfg`` with every source's ``index`` set: the one given, the one beside its data, or
    one built now (once, by the caller: a job's driver, before any rank starts). A new index
    goes beside the data, or under ``fallback`` when the data's folder is not writable; one
    whose dataset changed since (checked on a sample of tracks) is built again."""
    out = []
    for sc in cfg.sources:
        if sc.index and not fs.exists(sc.index):
            raise DataError(f"{sc.index}: index not found (source {sc.kind}:{sc.root})")
        tag = hashlib.sha1(f"{sc.kind}|{sc.root}|{sc.split}".encode()).hexdigest()[:10]
        spare = fs.join(fallback, f"{sc.kind}-{sc.split}-{tag}.parquet") if fallback else ""
        places = [sc.index] if sc.index else [p for p in (default_index(sc.root, sc.kind, sc.split), spare) if p]
        location = next((p for p in places if fs.exists(p) and not _stale(p, sc.root)), None)
        if location is None:
            table = build_index(sc.kind, sc.root, sc.split, workers, cfg.skip_bad)
            try:
                location = write_index(table, places[0])
            except OSError as e:
                if not spare:
                    raise DataError(f"{places[0]}: cannot write the index ({e}); give a writable place") from None
                location = write_index(table, spare)
            log.info("indexed %s:%s (%s tracks) -> %s", sc.kind, sc.root, table.num_rows, location)
        out.append(dataclasses.replace(sc, index=location))
    return dataclasses.replace(cfg, sources=out)
