"""Issue 19: every bad input stops before any work starts, and nothing that failed looks
finished. One group of tests per class of the issue; each asserts the message names the
input, and that no Ray instance, no MLflow run and no output was created where the check
comes first. (``scripts/bad_inputs.py`` tries the same and more as subprocesses and prints
the table of the issue's note.)"""
from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import torch

from lighttrack import cli
from lighttrack.arch import resolve
from lighttrack.config import ConfigError, load
from lighttrack.models.static import StaticTracker
from lighttrack.models.supernet import ClassSupernet, TrackSupernet
from lighttrack.train.config import SupernetConfig
from tests.home import EMBEDDED, HOME

ROOT = Path(__file__).resolve().parents[1]
VAL = EMBEDDED / "got10k" / "val"
SUPERNET_MICRO = ROOT / "configs" / "supernet_micro.yaml"


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    """A checkpoint of each phase, written as the training loops write them (fresh weights)."""
    d = tmp_path_factory.mktemp("ckpts")
    torch.save({"model": ClassSupernet().state_dict(), "epoch": 0, "eval_paths": {}}, d / "phase1.pt")
    torch.save({"model": TrackSupernet().state_dict(), "epoch": 1}, d / "phase2.pt")
    torch.save({"model": StaticTracker.build(resolve("lighttrack-mobile")).state_dict(), "epoch": 0,
                "stage": "finetune"}, d / "phase4.pt")
    (d / "notes.pt").write_text("not a checkpoint\n")
    data = (d / "phase2.pt").read_bytes()
    (d / "truncated.pt").write_bytes(data[: len(data) // 2])
    return {p.stem: p for p in d.iterdir()}


def _split(tmp_path: Path, edit=None, name: str = "data") -> Path:
    """A GOT-10k root with a copy of the embedded val split, edited by ``edit(val_dir, names)``."""
    root = tmp_path / name
    shutil.copytree(VAL, root / "val")
    if edit is not None:
        edit(root / "val", (root / "val" / "list.txt").read_text().split())
    return root


def _first_box_outside(d: Path, names: list[str]) -> None:
    gt = d / names[-1] / "groundtruth.txt"
    gt.write_text("\n".join(["5000,5000,20,20"] + gt.read_text().splitlines()[1:]) + "\n")


def _bad_last_entry(d: Path, names: list[str]) -> None:
    (d / "list.txt").write_text("\n".join(names + ["GOT-10k_Val_999999"]) + "\n")


def _corrupt_late_frame(d: Path, names: list[str]) -> None:
    frames = sorted((d / names[-1]).glob("*.jpg"))
    frames[len(frames) // 2].write_bytes(b"\xff\xd8 not a jpeg")


@pytest.fixture
def no_services(tmp_path, monkeypatch):
    """MLflow pointed at a fresh sqlite file; after the test, no Ray started and no MLflow run."""
    import ray

    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert not ray.is_initialized()
    yield
    assert not ray.is_initialized(), "a Ray instance was started before the bad input was found"
    if db.exists():
        with sqlite3.connect(db) as c:
            assert c.execute("select count(*) from runs").fetchone()[0] == 0, "an MLflow run was created"


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse usage errors
        code = e.code
    return code, capsys.readouterr().err


def _files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) if d.exists() else []


# -- 1. config values, not only keys -------------------------------------------------------
@pytest.mark.parametrize("override, needle", [
    ("epochs=-1", "epochs: -1 is out of range; must be >= 1"),
    ("batch_size=0", "batch_size: 0 is out of range"),
    ("optim.name=adamx", "optim.name: 'adamx' is not one of ['sgd', 'rmsprop', 'adamw']"),
    ("optim.lr=-0.1", "optim.lr: -0.1 is out of range; must be > 0"),
    ("run.use_gpu=maybe", "run.use_gpu: 'maybe' is not one of"),
    ("data.processing.flip=1.5", "data.processing.flip: 1.5 is out of range; must be >= 0 and <= 1"),
    ("data.sources=[{kind: imdb}]", "data.sources[0].kind: 'imdb'"),
    ("schedule.final_lr=0", "schedule.final_lr: 0.0; log decay needs final_lr > 0"),
    ("eval.tracker=vot2091", "eval.tracker: 'vot2091' is neither a preset"),
    ("eval.paths=[not-an-arch]", "eval.paths[0]: 'not-an-arch'"),
])
def test_a_config_value_out_of_its_domain_names_file_key_and_value(override, needle):
    with pytest.raises(ConfigError) as e:
        load(SupernetConfig, SUPERNET_MICRO, [override])
    assert str(SUPERNET_MICRO) in str(e.value) and needle in str(e.value)


def test_names_stay_names_and_every_shipped_config_is_in_its_domain():
    from lighttrack.search.config import SearchConfig
    from lighttrack.train.config import PretrainConfig, RetrainConfig

    assert load(SupernetConfig, SUPERNET_MICRO, ["run.use_gpu=true"]).run.use_gpu == "true"
    kinds = {"pretrain": PretrainConfig, "supernet": SupernetConfig, "retrain": RetrainConfig, "search": SearchConfig}
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        load(kinds[path.stem.split("_")[0]], path)  # raises if a shipped value left its domain
    with pytest.raises(ConfigError, match=r"optimizer.topk: 60 is more than population \(3\)"):
        load(SearchConfig, ROOT / "configs" / "search_micro.yaml", ["optimizer.topk=60"])


def test_jobs_refuse_bad_values_before_ray_and_mlflow(no_services, tmp_path):
    from ray_jobs import search, train_supernet

    common = ["--config", SUPERNET_MICRO, "--name", "bad", "--storage-path", tmp_path / "runs"]
    for extra, needle in ((["--set", "epochs=-1"], "epochs: -1"), (["--set", "optim.name=adamx"], "adamx")):
        with pytest.raises(ConfigError, match=needle):
            train_supernet.main([str(a) for a in common + extra])
    with pytest.raises(ConfigError, match="workers: 0 is out of range"):
        search.main(["--config", str(ROOT / "configs" / "search_micro.yaml"), "--supernet", "x",
                     "--flops-max", "600M", "--params-max", "2M", "--set", "workers=0"])
    assert not (tmp_path / "runs").exists()


def test_command_line_options_have_ranges(capsys, tmp_path):
    code, err = _cli(["evaluate", "--arch", "lighttrack-mobile", "--dataset", tmp_path, "--out", tmp_path / "o",
                      "--max-sequences", "-1"], capsys)
    assert code == 2 and "--max-sequences: must be >= 0, got -1" in err
    code, err = _cli(["track", "--arch", "lighttrack-mobile", "--frames", tmp_path, "--init", "1,1,5,5",
                      "--out", tmp_path / "v.mp4", "--fps", "0"], capsys)
    assert code == 2 and "--fps: must be > 0, got 0" in err
    from ray_jobs import search
    with pytest.raises(SystemExit):
        search.main(["--workers", "-2", "--supernet", "x"])
    assert "--workers: must be >= 1, got -2" in capsys.readouterr().err


# -- 2. inputs checked before work ----------------------------------------------------------
def test_a_checkpoint_of_the_wrong_phase_is_refused_from_its_keys(no_services, ckpts, tmp_path):
    from lighttrack.checkpoint import CheckpointError, inspect
    from ray_jobs import search, train_supernet

    assert [inspect(ckpts[k]).phase for k in ("phase1", "phase2", "phase4")] == ["pretrain", "supernet", "retrain"]
    with pytest.raises(CheckpointError, match=rf"init: {ckpts['phase4']} is a phase-4 static network .* "
                                              "needs a phase-1 backbone supernet"):
        train_supernet.main(["--config", str(SUPERNET_MICRO), "--name", "bad", "--storage-path",
                             str(tmp_path / "runs"), "--set", f"init={ckpts['phase4']}"])
    with pytest.raises(CheckpointError, match=rf"--supernet: {ckpts['phase1']} is a phase-1 backbone supernet"):
        search.main(["--config", str(ROOT / "configs" / "search_micro.yaml"), "--supernet", str(ckpts["phase1"]),
                     "--flops-max", "600M", "--params-max", "2M", "--storage-path", str(tmp_path / "runs")])
    assert not (tmp_path / "runs").exists()


def test_datasets_a_job_reads_are_checked_before_ray(no_services, ckpts, tmp_path):
    from lighttrack.data.fs import DataError
    from ray_jobs import search, train_supernet

    with pytest.raises(DataError, match=r"data.sources\[0\]: dataset root /nonexistent/got10k does not exist"):
        train_supernet.main(["--config", str(SUPERNET_MICRO), "--name", "bad", "--storage-path",
                             str(tmp_path / "runs"), "--set", f"init={ckpts['phase1']}",
                             "--set", "data.sources=[{root: /nonexistent/got10k}]"])
    with pytest.raises(DataError, match="eval.val_root: GOT-10k split must be train, val or test, got 'nosuch'"):
        search.main(["--config", str(ROOT / "configs" / "search_micro.yaml"), "--supernet", str(ckpts["phase2"]),
                     "--flops-max", "600M", "--params-max", "2M", "--set", "eval.val_split=nosuch"])


@pytest.mark.parametrize("edit, needle", [
    (_bad_last_entry, "GOT-10k_Val_999999"),
    (_first_box_outside, "initial box [5000.0, 5000.0, 20.0, 20.0] lies entirely outside"),
])
def test_evaluate_and_export_check_the_whole_split_before_tracking(edit, needle, tmp_path, capsys):
    root = _split(tmp_path, edit)
    code, err = _cli(["evaluate", "--arch", "lighttrack-mobile", "--dataset", root, "--out", tmp_path / "res"], capsys)
    assert code == 2 and needle in err and _files(tmp_path / "res") == []
    code, err = _cli(["export", "--arch", "lighttrack-mobile", "--no-torch-export", "--dataset", root,
                      "--out", tmp_path / "exp"], capsys)
    assert code == 2 and needle in err and _files(tmp_path / "exp") == []  # nothing exported


def test_track_checks_the_first_box_against_the_first_frame(tmp_path, capsys):
    frames = VAL / (VAL / "list.txt").read_text().split()[0]
    code, err = _cli(["track", "--arch", "lighttrack-mobile", "--frames", frames, "--init", "5000,5000,20,20",
                      "--out", tmp_path / "v.mp4"], capsys)
    assert code == 2 and "--init 5000,5000,20,20" in err and "entirely outside" in err
    code, err = _cli(["track", "--arch", "lighttrack-mobile", "--frames", tmp_path / "none", "--init", "1,1,5,5",
                      "--out", tmp_path / "v.mp4"], capsys)
    assert code == 2 and "none: no such video or folder" in err and _files(tmp_path) == []


def test_data_check_reports_boxes_outside_the_image(tmp_path, capsys):
    def later_box_outside(d: Path, names: list[str]) -> None:
        gt = d / names[0] / "groundtruth.txt"
        lines = gt.read_text().splitlines()
        lines[5] = "9000,9000,30,40"
        gt.write_text("\n".join(lines) + "\n")
        _first_box_outside(d, names)

    root = _split(tmp_path, later_box_outside)
    names = (root / "val" / "list.txt").read_text().split()
    code = cli.main(["data", "check", str(root)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{names[0]}/groundtruth.txt:6" in out and "box [9000.0, 9000.0, 30.0, 40.0] lies entirely outside" in out
    assert f"{names[-1]}/groundtruth.txt:1" in out and "the first box (the tracker starts from it)" in out


# -- 3. nothing that failed looks finished --------------------------------------------------
def test_a_corrupt_frame_half_way_leaves_no_results_video_or_export(tmp_path, capsys):
    root = _split(tmp_path, _corrupt_late_frame)
    res = tmp_path / "res"
    res.mkdir()
    (res / "notes.txt").write_text("mine")  # what the folder held before stays
    code, err = _cli(["evaluate", "--arch", "lighttrack-mobile", "--dataset", root, "--out", res], capsys)
    assert code == 2 and "not a readable image" in err and _files(res) == ["notes.txt"]
    code, err = _cli(["export", "--arch", "lighttrack-mobile", "--no-torch-export", "--dataset", root,
                      "--out", tmp_path / "exp"], capsys)
    assert code == 2 and "not a readable image" in err and _files(tmp_path / "exp") == []  # no card, no graphs
    seq = root / "val" / (root / "val" / "list.txt").read_text().split()[-1]
    code, err = _cli(["track", "--arch", "lighttrack-mobile", "--frames", seq, "--init", "10,10,20,20",
                      "--out", tmp_path / "v" / "video.mp4", "--boxes", tmp_path / "v" / "boxes.txt"], capsys)
    assert code == 2 and "not a readable image" in err and _files(tmp_path / "v") == []


def test_atomic_outputs_replace_on_success_and_keep_the_old_on_failure(tmp_path):
    from lighttrack.atomic import atomic_dir, atomic_file

    target = tmp_path / "a" / "card.json"
    with atomic_file(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "new" and _files(tmp_path / "a") == ["card.json"]
    d = tmp_path / "d"
    with atomic_dir(d) as tmp:
        (tmp / "seq").mkdir()
        (tmp / "seq" / "r.txt").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(d) as tmp:
        (tmp / "seq").mkdir()
        (tmp / "seq" / "r.txt").write_text("2")
        raise RuntimeError("boom")
    assert _files(d) == ["seq/r.txt"] and (d / "seq" / "r.txt").read_text() == "1"


def test_a_failed_run_is_marked_failed_with_its_reason(tmp_path):
    from mlflow.tracking import MlflowClient

    from ray_jobs.common import FAILURE_TAG, mark_failed

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    run = client.create_run(exp).info.run_id
    mark_failed(client, run, RuntimeError("Training failed\nTraceback ...\nValueError: batch too large"))
    got = client.get_run(run)
    assert got.info.status == "FAILED" and got.data.tags[FAILURE_TAG] == "RuntimeError: ValueError: batch too large"
    other = client.create_run(exp).info.run_id
    mark_failed(client, other, KeyboardInterrupt())
    assert client.get_run(other).info.status == "KILLED"


# -- 4. errors, not tracebacks --------------------------------------------------------------
def test_files_that_are_not_checkpoints_are_named(ckpts, tmp_path, capsys):
    root = _split(tmp_path)
    for name, needle in (("notes", "not a PyTorch checkpoint"), ("truncated", "not a PyTorch checkpoint"),
                         ("phase1", "classifier weights; a tracker needs")):
        code, err = _cli(["evaluate", "--arch", "lighttrack-mobile", "--dataset", root, "--out", tmp_path / "r",
                          "--checkpoint", ckpts[name]], capsys)
        assert code == 2 and str(ckpts[name]) in err and needle in err and "Traceback" not in err


def test_unwritable_outputs_split_names_and_presets_are_one_line(tmp_path, capsys):
    root = _split(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # root writes through mode bits: a path under a file is unwritable for anyone
    code, err = _cli(["evaluate", "--arch", "lighttrack-mobile", "--dataset", root, "--out", blocker / "r"], capsys)
    assert code == 2 and f"cannot create the output folder {blocker / 'r'}" in err
    code, err = _cli(["export", "--arch", "lighttrack-mobile", "--no-torch-export", "--out", blocker / "e"], capsys)
    assert code == 2 and f"cannot create the output folder {blocker / 'e'}" in err
    code, err = _cli(["evaluate", "--arch", "lighttrack-mobile", "--dataset", root, "--split", "train",
                      "--out", tmp_path / "r"], capsys)
    assert code == 2 and "no split 'train'" in err and "its splits: val" in err
    code, err = _cli(["evaluate", "--arch", "lighttrack-huge", "--dataset", root, "--out", tmp_path / "r"], capsys)
    assert code == 2 and "'lighttrack-huge' is neither a preset (lighttrack-mobile" in err
    code, err = _cli(["evaluate", "--arch", "lighttrack-mobile", "--tracker", "vot2091", "--dataset", root,
                      "--out", tmp_path / "r"], capsys)
    assert code == 2 and "tracker 'vot2091' is neither a preset (released, vot2019)" in err


def test_a_split_the_job_never_reads_is_not_required(monkeypatch):
    """Phase 2 with no evaluated path never reads its validation split (a cluster job whose
    data is in a bucket keeps the config's local default there)."""
    from lighttrack.data.fs import DataError
    from lighttrack.config import check_inputs

    monkeypatch.chdir(HOME)  # the micro config's data roots are relative: the suite's own data/synth
    check_inputs(load(SupernetConfig, SUPERNET_MICRO, ["eval.num_paths=0", "eval.root=/nonexistent"]))
    with pytest.raises(DataError, match="eval.root: dataset root /nonexistent does not exist"):
        check_inputs(load(SupernetConfig, SUPERNET_MICRO, ["eval.num_paths=1", "eval.root=/nonexistent"]))
