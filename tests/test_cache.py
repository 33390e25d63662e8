"""Evaluation cache: keys, settings id, Parquet parts, concurrent writers (issue 8)."""
from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lighttrack.data.readers import Got10k
from lighttrack.search.cache import EvalCache, fingerprint_sequences, settings_id, supernet_id
from lighttrack.tracker.params import PRESETS
from tests.home import EMBEDDED

SYNTH = EMBEDDED / "got10k"


@pytest.fixture()
def val_copy(tmp_path):
    """Two synthetic val sequences copied (so a test can change their content)."""
    if not (SYNTH / "val").is_dir():
        pytest.skip("embedded data missing: run `lighttrack data synth --out data/synth`")
    src = Got10k(str(SYNTH), "val")
    dst = tmp_path / "got10k" / "val"
    dst.mkdir(parents=True)
    for name in src.sequence_names[:2]:
        shutil.copytree(SYNTH / "val" / name, dst / name)
    (dst / "list.txt").write_text("\n".join(src.sequence_names[:2]) + "\n")
    return tmp_path / "got10k"


def _fp(root: Path) -> str:
    r = Got10k(str(root), "val")
    return fingerprint_sequences(r.sequence(i) for i in range(len(r)))


def test_settings_id_changes_with_every_input(val_copy):
    base = dict(sequences=_fp(val_copy), tracker=PRESETS["vot2019"], recal_batches=4,
                recal_batch_size=8, seed=0, recal_data=f"{SYNTH}:train")
    ref = settings_id(**base)
    assert settings_id(**base) == ref  # nothing changed: hit
    changed = {
        "tracker": replace(PRESETS["vot2019"], penalty_k=0.0071),
        "recal_batches": 5, "recal_batch_size": 4, "seed": 1, "recal_data": "other:train",
    }
    for key, value in changed.items():
        assert settings_id(**{**base, key: value}) != ref, key
    # Sequence content: one byte of one frame.
    frame = sorted((val_copy / "val").glob("*/*.jpg"))[3]
    data = bytearray(frame.read_bytes())
    data[-3] ^= 0xFF
    frame.write_bytes(bytes(data))
    assert settings_id(**{**base, "sequences": _fp(val_copy)}) != ref
    # Sequence list: drop one.
    names = (val_copy / "val" / "list.txt").read_text().split()
    (val_copy / "val" / "list.txt").write_text(names[0] + "\n")
    fp_one = _fp(val_copy)
    assert fp_one != base["sequences"]
    # Annotation: one box coordinate.
    gt = val_copy / "val" / names[0] / "groundtruth.txt"
    lines = gt.read_text().splitlines()
    x, *rest = lines[2].split(",")
    lines[2] = ",".join([str(float(x) + 1), *rest])
    gt.write_text("\n".join(lines) + "\n")
    assert _fp(val_copy) != fp_one


def test_supernet_id_is_a_content_hash():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    a = supernet_id(net.state_dict())
    assert supernet_id({k: v.clone() for k, v in net.state_dict().items()}) == a
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0] += 1e-3
    assert supernet_id(net.state_dict()) != a


def _row(arch: str, ao: float, supernet: str = "s1", settings: str = "e1") -> dict:
    now = dt.datetime.now(dt.timezone.utc)
    return dict(supernet_id=supernet, settings_id=settings, arch=arch, ao=ao, sr50=ao, sr75=0.0,
                params=1, macs=2, recal_batches=4, seconds=1.5, started=now, finished=now)


def test_cache_keys_parts_and_writers(tmp_path):
    loc = tmp_path / "cache"
    a, b = EvalCache(str(loc)), EvalCache(f"file://{loc}")  # two writers, one local, one URI
    assert a.rows() == [] and len(a) == 0
    a.append([_row("x", 0.5)])
    b.append([_row("y", 0.6), _row("x", 0.9)])  # a second evaluation of x: the first wins
    c = EvalCache(str(loc))
    assert c.get("s1", "e1", "x", refresh=True)["ao"] == 0.5
    assert c.get("s1", "e1", "y")["ao"] == 0.6
    assert a.get("s1", "e1", "y", refresh=True) is not None  # refresh reads other writers' parts
    # Any key component differing misses.
    assert c.get("s2", "e1", "x") is None and c.get("s1", "e2", "x") is None and c.get("s1", "e1", "z") is None
    assert len(c.rows("s1", "e1")) == 2 and len(list(loc.glob("part-*.parquet"))) == 2
    with pytest.raises(ValueError, match="arch"):
        a.append([{**_row("q", 0.1), "arch": ""}])


def test_cached_evaluator_answers_from_the_cache_and_keeps_rows_an_outage_kept_out(tmp_path, monkeypatch):
    """The evaluator the search's actors and a plain loop share: a row another writer put in
    the cache is answered from it; a new row is appended with who evaluated it; a row the
    store refused is held and written with the next call (flush)."""
    from lighttrack.search.cache import CachedEvaluator

    class Scorer:  # stands in for CandidateEvaluator: supernet/settings ids and evaluate(arch)
        supernet_id, settings_id, calls = "s1", "e1", []

        def evaluate(self, arch):
            self.calls.append(arch)
            return _row(arch, 0.4)

    loc = str(tmp_path / "cache")
    EvalCache(loc).append([_row("x", 0.5)])  # another search's row
    ev = CachedEvaluator(Scorer(), EvalCache(loc), worker="node1:pid7")
    assert ev("x")["cached"] is True and ev("x")["ao"] == 0.5 and Scorer.calls == []
    row = ev("y", search="s", budget="600M_2M", trial="t1")
    assert row["cached"] is False and Scorer.calls == ["y"] and ev.evaluated == 1 and ev.cache_answers == 2
    assert EvalCache(loc).get("s1", "e1", "y", refresh=True)["worker"] == "node1:pid7"
    real = EvalCache.append

    def store_out(self, rows):
        raise OSError("bucket unreachable")

    monkeypatch.setattr(EvalCache, "append", store_out)
    assert ev("z")["cached"] is False and ev.flush() == 1  # held, not lost
    monkeypatch.setattr(EvalCache, "append", real)
    assert ev.flush() == 0 and EvalCache(loc).get("s1", "e1", "z", refresh=True) is not None
