"""The Parquet index: same tracks and pairs as the direct path, stale data refused, parallel
build, built once by a job's driver, read from a bucket; persistent loader workers; reduced
JPEG decode."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from lighttrack.data import fs, synth
from lighttrack.data.classification import ImageFolderCV
from lighttrack.data.fs import DataError
from lighttrack.data.index import build_class_index, build_index, default_index, read_index, write_index
from lighttrack.data.processing import PairProcessor, ProcessingConfig
from lighttrack.data.readers import Got10k
from lighttrack.data.sampling import (OCEAN_MIX, PairDataConfig, PairDataset, PairSource, SourceConfig,
                                      build_pair_dataset, index_sources)
from lighttrack.train.common import Dist, make_loader, set_loader_epoch

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synth.write(out, seed=2, size="tiny")
    return out


def _same_items(a, b, n: int) -> None:
    for i in range(n):
        x, y = a[i], b[i]
        assert all(torch.equal(x[k], y[k]) for k in x), i


def test_index_gives_the_direct_readers_tracks_and_pairs(data, tmp_path):
    root = str(data / "got10k")
    direct = Got10k(root, "train")
    write_index(build_index("got10k", root, "train"), str(tmp_path / "i.parquet"))
    indexed = read_index(str(tmp_path / "i.parquet"))
    assert indexed.sequence_names == direct.sequence_names
    for i in range(len(direct)):
        a, b = direct.get_sequence_info(i), indexed.get_sequence_info(i)
        assert all(np.array_equal(a[k], b[k]) for k in a)
        assert indexed._frame_list(i) == direct._frame_list(i)
        assert indexed.image_size(i) == (320, 240)
    cfg = PairDataConfig(sources=[SourceConfig(root=root, pairs_per_epoch=12)], seed=3)
    with_index = PairDataConfig(sources=[SourceConfig(root=root, pairs_per_epoch=12,
                                                      index=str(tmp_path / "i.parquet"))], seed=3)
    _same_items(build_pair_dataset(cfg), build_pair_dataset(with_index), 12)


@pytest.mark.parametrize("kind,split", [("vid", "train"), ("det", "train"), ("coco", "train"),
                                        ("crop511", "train"), ("lasot", "train")])
def test_every_kind_indexes_and_samples(data, tmp_path, kind, split):
    root = data / kind
    if kind == "lasot":  # the embedded sequences in LaSOT's layout
        for i, name in enumerate(Got10k(data / "got10k", "train").sequence_names[:2]):
            d = tmp_path / "lasot" / "cat" / f"cat-{i + 1}"
            shutil.copytree(data / "got10k" / "train" / name, d / "img")
            (d / "groundtruth.txt").write_text((d / "img" / "groundtruth.txt").read_text())
            n = len((d / "groundtruth.txt").read_text().split())
            (d / "full_occlusion.txt").write_text(",".join(["0"] * n))
            (d / "out_of_view.txt").write_text(",".join(["0"] * n))
        root = tmp_path / "lasot"
    table = build_index(kind, str(root), split, workers=2)
    assert table.num_rows > 0
    write_index(table, default_index(str(root), kind, split))
    src = SourceConfig(root=str(root), kind=kind, split=split, frame_range=0 if kind in ("det", "coco") else 3,
                       pairs_per_epoch=4)
    ds = build_pair_dataset(PairDataConfig(sources=[src]))
    assert type(ds.sources[0].reader).__name__ == "IndexedReader"  # found beside the data
    item = ds[1]
    assert item["template"].shape == (3, 128, 128) and item["template"].dtype == torch.uint8
    assert item["cls_label"].sum() == 5


def test_parallel_build_equals_serial(data):
    a = build_index("vid", str(data / "vid"), "train", workers=0)
    b = build_index("vid", str(data / "vid"), "train", workers=2)
    assert a.to_pylist() == b.to_pylist()


def test_changed_annotations_are_refused_not_served(data, tmp_path):
    root = tmp_path / "got10k"
    shutil.copytree(data / "got10k", root)
    write_index(build_index("got10k", str(root), "train"), str(tmp_path / "i.parquet"))
    reader = read_index(str(tmp_path / "i.parquet"))
    gt = root / "train" / reader.sequence_names[1] / "groundtruth.txt"
    time.sleep(0.01)
    gt.write_text(gt.read_text().replace(".", ",", 3) + "1,1,1,1\n")
    reader.get_sequence_info(0)  # untouched sequences still read
    with pytest.raises(DataError, match=r"stale index: .*groundtruth.txt changed.*lighttrack data index"):
        read_index(str(tmp_path / "i.parquet")).get_sequence_info(1)
    (root / "train" / "list.txt").write_text("\n".join(reader.sequence_names[:2]) + "\n")
    with pytest.raises(DataError, match=r"stale index: .*list.txt changed"):
        read_index(str(tmp_path / "i.parquet"))


def test_bad_units_fail_listed_or_are_skipped(data, tmp_path):
    root = tmp_path / "got10k"
    shutil.copytree(data / "got10k", root)
    names = Got10k(root, "train").sequence_names
    (root / "train" / names[2] / "absence.label").write_text("0\n")  # wrong length
    with pytest.raises(DataError, match=rf"(?s)1 problem.*{names[2]}/absence.label: 1 labels for"):
        build_index("got10k", str(root), "train")
    out = subprocess.run([sys.executable, "-m", "lighttrack.cli", "data", "index", str(root), "--skip-bad",
                          "--workers", "2", "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert f"{len(names) - 1} tracks" in out.stdout and "1 unit(s) skipped" in out.stdout
    assert read_index(default_index(str(root), "got10k", "train")).sequence_names == [n for n in names if n != names[2]]


def test_a_jobs_driver_builds_each_index_once_and_falls_back_when_it_cannot_write_beside(data, tmp_path):
    from ray_jobs.train_job import with_indexes
    from lighttrack.train.config import SupernetConfig
    root = tmp_path / "got10k"
    shutil.copytree(data / "got10k", root)
    vid = tmp_path / "vid"
    shutil.copytree(data / "vid", vid)
    cfg = SupernetConfig(data=PairDataConfig(sources=[SourceConfig(root=str(root)),
                                                      SourceConfig(root=str(vid), kind="vid")]))
    (root / ".index").write_text("")  # the index cannot be written beside the data (as if read-only)
    out = with_indexes(cfg, str(tmp_path / "storage"))
    got_index, vid_index = (s.index for s in out.data.sources)
    assert got_index.startswith(str(tmp_path / "storage" / "indexes")) and Path(got_index).is_file()
    assert vid_index == default_index(str(vid), "vid", "train") and Path(vid_index).is_file()
    stamp, stamp_got = Path(vid_index).stat().st_mtime_ns, Path(got_index).stat().st_mtime_ns
    again = with_indexes(dataclass_replace_index(cfg, vid_index), str(tmp_path / "storage"))
    assert Path(vid_index).stat().st_mtime_ns == stamp  # found, not rebuilt
    assert again.data.sources[1].index == vid_index
    third = with_indexes(cfg, str(tmp_path / "storage"))  # the spare place is found again
    assert [s.index for s in third.data.sources] == [got_index, vid_index]
    assert Path(got_index).stat().st_mtime_ns == stamp_got


def dataclass_replace_index(cfg, vid_index):
    import dataclasses
    sources = [cfg.data.sources[0], dataclasses.replace(cfg.data.sources[1], index=vid_index)]
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, sources=sources))


def test_persistent_workers_see_each_epoch(data):
    ds = PairDataset([PairSource(Got10k(data / "got10k", "train"), 3, 8, "g")], seed=4)
    loader = make_loader(ds, 4, Dist(), shuffle=False, workers=2)
    assert loader.persistent_workers
    seen = {}
    for epoch in (0, 1):
        set_loader_epoch(loader, epoch)
        seen[epoch] = torch.cat([b["search"].float() for b in loader])
        ds.set_epoch(epoch)  # the same items, drawn in this process
        expect = torch.stack([ds[i]["search"].float() for i in range(8)])
        assert torch.equal(seen[epoch], expect)
    assert not torch.equal(seen[0], seen[1])


def test_reduced_decode_keeps_geometry_and_is_off_for_small_crops(tmp_path):
    from skimage import data as skdata
    img = cv2.resize(skdata.astronaut(), (1280, 720))
    path = tmp_path / "f.jpg"
    cv2.imwrite(str(path), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    proc = PairProcessor(ProcessingConfig())
    big, small = np.array([400., 150., 420., 380.]), np.array([600., 300., 40., 50.])
    assert proc.reduction(big, search=False) == 4 and proc.reduction(big, search=True) == 4
    assert proc.reduction(small, search=True) == 1
    assert PairProcessor(ProcessingConfig(reduced_decode=False)).reduction(big, search=True) == 1
    full = fs.read_image(str(path))
    for r in (2, 4, 8):
        assert fs.read_image(str(path), r).shape == (720 // r, 1280 // r, 3)
    rz, rx = proc.reduction(big, False), proc.reduction(big, True)
    a = proc(full, big, full, big, np.random.default_rng(0))
    b = proc(fs.read_image(str(path), rz), big / rz, fs.read_image(str(path), rx), big / rx, np.random.default_rng(0))
    for k in ("cls_label", "reg_target", "reg_mask", "search_box", "template_box"):
        assert torch.equal(a[k], b[k]), k  # boxes and labels are exact: only pixels are resampled
    for k in ("template", "search"):
        assert (a[k].float() - b[k].float()).abs().mean() < 6, k
    # through the dataset: small targets decode at full size, so items equal the full-decode ones
    root = tmp_path / "seq"
    (root / "s1").mkdir(parents=True)
    for k in range(3):
        shutil.copy(path, root / "s1" / f"{k:05d}.jpg")
    (root / "s1" / "groundtruth.txt").write_text("600,300,40,50\n" * 3)
    from lighttrack.data.readers import FolderSequences
    src = [PairSource(FolderSequences(root), 2, 6, "f")]
    _same_items(PairDataset(src, PairProcessor(ProcessingConfig(reduced_decode=False))),
                PairDataset(src, PairProcessor(ProcessingConfig())), 6)


def test_imagenet_listing_from_the_index(data, tmp_path):
    folder = str(data / "imagenet" / "train")
    walked = ImageFolderCV(folder, index=None)
    write_index(build_class_index(folder), default_index(str(data / "imagenet"), "imagenet", "train"))
    indexed = ImageFolderCV(folder)
    assert indexed._listing is not None
    assert indexed.samples == walked.samples and indexed.classes == walked.classes
    # the command indexes both splits unless one is named
    shutil.copytree(data / "imagenet", tmp_path / "imagenet")
    out = subprocess.run([sys.executable, "-m", "lighttrack.cli", "data", "index", str(tmp_path / "imagenet"),
                          "--kind", "imagenet"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert all(Path(default_index(str(tmp_path / "imagenet"), "imagenet", s)).is_file() for s in ("train", "val"))


def test_index_built_and_read_from_a_bucket(data, tmp_path, s3_server, monkeypatch):
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    shutil.copytree(data / "crop511", tmp_path / "crop511", ignore=shutil.ignore_patterns(".index"))
    uri = s3_server.upload(tmp_path / "crop511", "index-test", "crop511")
    cfg = index_sources(PairDataConfig(sources=[SourceConfig(root=uri, kind="crop511", split="train",
                                                             frame_range=3, pairs_per_epoch=4)]))
    assert cfg.sources[0].index == f"{uri}/.index/crop511-train.parquet"  # beside the data
    assert fs.exists(cfg.sources[0].index)
    ds = build_pair_dataset(cfg)
    assert ds.sources[0].reader.root == uri and ds[0]["search"].shape == (3, 256, 256)
    local = build_pair_dataset(PairDataConfig(sources=[SourceConfig(root=str(data / "crop511"), kind="crop511",
                                                                    frame_range=3, pairs_per_epoch=4)]))
    _same_items(local, ds, 4)  # the same bytes from the bucket: the same items
    # forked loader workers open their own S3 connections (none inherited from this process)
    loader = make_loader(ds, 2, Dist(), shuffle=False, workers=2)
    got = torch.cat([b["search"] for b in loader])
    assert torch.equal(got, torch.stack([local[i]["search"] for i in range(4)]))
    # ImageNet's listing from an index in the bucket
    img = s3_server.upload(data / "imagenet", "index-test", "imagenet")
    write_index(build_class_index(f"{img}/val"), default_index(img, "imagenet", "val"))
    from_bucket = ImageFolderCV(f"{img}/val")
    assert from_bucket._listing is not None and len(from_bucket) == len(ImageFolderCV(str(data / "imagenet" / "val")))
    assert from_bucket[0][1] == 0 and from_bucket[0][0].shape[-1] == 3
    # an index copied along with its data has the copy's times: refused, not trusted
    write_index(build_index("crop511", str(data / "crop511"), "train"), default_index(str(data / "crop511"), "crop511", "train"))
    uri2 = s3_server.upload(data / "crop511", "index-test", "copied")
    assert fs.exists(f"{uri2}/.index/crop511-train.parquet")
    copied = PairDataConfig(sources=[SourceConfig(root=uri2, kind="crop511", pairs_per_epoch=4)])
    with pytest.raises(DataError, match="stale index"):
        build_pair_dataset(copied)[0]
    _same_items(local, build_pair_dataset(index_sources(copied)), 4)  # a job's driver builds it again


def test_full_size_config_is_oceans_mix():
    cfg = yaml.safe_load((ROOT / "configs" / "supernet.yaml").read_text())
    key = {"vid": "vid", "crop511": "ytb", "got10k": "got10k", "det": "det", "coco": "coco"}
    mix = {key[s["kind"]]: (s["frame_range"], s["pairs_per_epoch"]) for s in cfg["data"]["sources"]}
    assert mix == OCEAN_MIX
