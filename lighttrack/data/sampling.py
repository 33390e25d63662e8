"""Template/search pairs from several tracking datasets mixed with a per-dataset quota.

An epoch has ``sum(pairs_per_epoch)`` items. Item ``k`` of epoch ``e`` is fully determined by
``(seed, e, k)``: the epoch's interleaving of sources is a permutation drawn from
``(seed, e)`` and the pair itself (sequence, frames, augmentation) from
``np.random.default_rng((seed, e, k))``. So the data does not depend on the number of
DataLoader workers or on which worker draws which item. Call ``set_epoch(e)`` before building
the epoch's iterator (with ``persistent_workers=True`` workers keep the epoch they started with).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from torch.utils.data import Dataset

from .check import check_reader
from .fs import DataError
from .processing import PairProcessor, ProcessingConfig
from .readers import open_tracking

__all__ = ["SourceConfig", "PairDataConfig", "PairSource", "PairDataset", "OCEAN_MIX", "build_pair_dataset"]

log = logging.getLogger(__name__)

# Ocean's training mix (REFERENCE §1, §3): dataset -> (frame range, pairs per epoch).
# DET and COCO are still images: template and search come from the same frame.
OCEAN_MIX: dict[str, tuple[int, int]] = {
    "vid": (100, 110_000), "ytb": (3, 210_000), "got10k": (100, 160_000),
    "det": (0, 60_000), "coco": (0, 60_000),
}


@dataclass
class SourceConfig:
    """One tracking dataset in the mix."""
    root: str = "data/synth/got10k"  # dataset root: local path or pyarrow.fs URI
    kind: str = "got10k"  # got10k | lasot | folder
    split: str = "train"  # GOT-10k split
    frame_range: int = 100  # max |search frame - template frame|
    pairs_per_epoch: int = 1000  # items drawn from this dataset per epoch


@dataclass
class PairDataConfig:
    """Tracking pairs for phase 2/4 training."""
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    seed: int = 0  # base seed; items depend on (seed, epoch, index) only
    skip_bad: bool = False  # skip sequences with problems (with a warning) instead of refusing


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

    def _source(self, index: int) -> int:
        if self._order_epoch != self.epoch:
            ids = np.repeat(np.arange(len(self.sources)), [s.pairs_per_epoch for s in self.sources])
            self._source_of = np.random.default_rng((self.seed, self.epoch)).permutation(ids)
            self._order_epoch = self.epoch
        return int(self._source_of[index])

    def _info(self, si: int, i: int) -> dict:
        key = (si, i)
        if key not in self._infos:
            self._infos[key] = self.sources[si].reader.get_sequence_info(i)
        return self._infos[key]

    def sample(self, index: int) -> tuple[int, int, int, int]:
        """(source, sequence, template frame, search frame) of item ``index`` this epoch."""
        si = self._source(index)
        src = self.sources[si]
        rng = np.random.default_rng((self.seed, self.epoch, index, 0))
        for _ in range(self.max_tries):
            i = int(rng.integers(len(src.reader)))
            visible = np.flatnonzero(self._info(si, i)["visible"])
            if len(visible) == 0:
                continue
            t = int(rng.choice(visible))
            near = visible[np.abs(visible - t) <= src.frame_range]
            return si, i, t, int(rng.choice(near))
        raise DataError(f"source {src.name}: no visible frame found in {self.max_tries} sequences")

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        si, i, t, s = self.sample(index)
        reader = self.sources[si].reader
        boxes = self._info(si, i)["bbox"]
        frames = reader.get_frames(i, [t] if t == s else [t, s])
        z_img, x_img = frames[0], frames[-1]
        rng = np.random.default_rng((self.seed, self.epoch, index, 1))
        return self.processor(z_img, boxes[t], x_img, boxes[s], rng)


def build_pair_dataset(cfg: PairDataConfig) -> PairDataset:
    """Open every source, check it, and build the dataset.

    A source with problems (see :func:`lighttrack.data.check.check_reader`) is refused with
    every problem listed, or, with ``cfg.skip_bad``, its bad sequences are left out with a warning.
    """
    sources = []
    for sc in cfg.sources:
        reader = open_tracking(sc.kind, sc.root, sc.split)
        problems = check_reader(reader, decode=False)
        if problems:
            listing = "\n".join(f"  {p}" for p in problems)
            if not cfg.skip_bad:
                raise DataError(f"{sc.root}: {len(problems)} problem(s); fix them or set "
                                f"skip_bad=true:\n{listing}")
            bad = {p.sequence for p in problems if p.sequence}
            if any(not p.sequence for p in problems):
                raise DataError(f"{sc.root}: problems outside any sequence:\n{listing}")
            log.warning("%s: skipping %d bad sequence(s): %s\n%s", sc.root, len(bad), sorted(bad), listing)
            reader = open_tracking(sc.kind, sc.root, sc.split,
                                   [n for n in reader.sequence_names if n not in bad])
        sources.append(PairSource(reader, sc.frame_range, sc.pairs_per_epoch, f"{sc.kind}:{sc.root}"))
    return PairDataset(sources, PairProcessor(cfg.processing), cfg.seed)
