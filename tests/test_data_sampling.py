"""Pair sampling: frame ranges, visible frames only, per-dataset quotas, determinism, workers."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from lighttrack.data import synth
from lighttrack.data.fs import DataError
from lighttrack.data.readers import Got10k
from lighttrack.data.sampling import (OCEAN_MIX, PairDataConfig, PairDataset, PairSource, SourceConfig,
                                      build_pair_dataset)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synth.write(out, seed=5, size="tiny")
    return out / "got10k"


def test_ocean_mix_is_the_reference_numbers():
    assert sum(p for _, p in OCEAN_MIX.values()) == 600_000
    assert OCEAN_MIX["got10k"] == (100, 160_000) and OCEAN_MIX["ytb"] == (3, 210_000)
    assert OCEAN_MIX["det"][0] == 0 and OCEAN_MIX["coco"][0] == 0


def test_pairs_respect_frame_range_and_visibility(root):
    reader = Got10k(root, "train")
    ds = PairDataset([PairSource(reader, 3, 200, "got")], seed=1)
    for k in range(200):
        _, i, t, s = ds.sample(k)
        vis = reader.get_sequence_info(i)["visible"]
        assert vis[t] and vis[s] and abs(t - s) <= 3
    same = PairDataset([PairSource(reader, 0, 50, "still")], seed=1)
    assert all(same.sample(k)[2] == same.sample(k)[3] for k in range(50))


def test_quota_per_source_and_determinism(root):
    train, val = Got10k(root, "train"), Got10k(root, "val")
    make = lambda: PairDataset([PairSource(train, 100, 30, "a"), PairSource(val, 5, 10, "b")], seed=7)
    ds = make()
    assert len(ds) == 40
    assert sorted(ds.sample(k)[0] for k in range(40)) == [0] * 30 + [1] * 10
    first = [ds.sample(k) for k in range(40)]
    assert [make().sample(k) for k in range(40)] == first
    a, b = ds[3], make()[3]
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    ds.set_epoch(1)
    assert [ds.sample(k) for k in range(40)] != first
    ds.set_epoch(0)
    assert [ds.sample(k) for k in range(40)] == first


def test_dataloader_workers_give_the_same_batches(root):
    ds = PairDataset([PairSource(Got10k(root, "train"), 100, 8, "got")], seed=2)
    ds.set_epoch(4)
    single = next(iter(DataLoader(ds, batch_size=8, num_workers=0)))
    multi = next(iter(DataLoader(ds, batch_size=8, num_workers=2)))
    assert single["search"].shape == (8, 3, 256, 256) and single["cls_label"].shape == (8, 16, 16)
    for key in single:
        torch.testing.assert_close(single[key], multi[key])


def _break(root: Path, tmp: Path) -> Path:
    bad = tmp / "got10k"
    shutil.copytree(root, bad)
    seq = bad / "train" / "GOT-10k_Train_000002"
    (seq / "00000003.jpg").unlink()
    return bad


def test_build_refuses_a_broken_dataset_or_skips_bad_sequences(root, tmp_path, caplog):
    bad = _break(root, tmp_path)
    cfg = PairDataConfig(sources=[SourceConfig(root=str(bad), pairs_per_epoch=20)])
    with pytest.raises(DataError, match=r"GOT-10k_Train_000002.*00000003.jpg: missing frame"):
        build_pair_dataset(cfg)
    cfg.skip_bad = True
    with caplog.at_level(logging.WARNING):
        ds = build_pair_dataset(cfg)
    assert "GOT-10k_Train_000002" in caplog.text
    reader = ds.sources[0].reader
    assert "GOT-10k_Train_000002" not in reader.sequence_names and len(reader) == synth.SIZES["tiny"].train - 1
    assert ds[0]["template"].shape == (3, 128, 128)


def test_bad_source_settings_are_refused(root):
    with pytest.raises(ValueError, match="frame_range"):
        PairDataset([PairSource(Got10k(root, "train"), -1, 10, "x")])
    with pytest.raises(ValueError, match="pairs_per_epoch"):
        PairDataset([PairSource(Got10k(root, "train"), 1, 0, "x")])
    with pytest.raises(IndexError):
        PairDataset([PairSource(Got10k(root, "train"), 1, 3, "x")])[3]
