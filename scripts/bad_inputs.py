"""Try malformed inputs on the CLI and the four jobs, the way a new user would, and print a
table: how each one ended, how fast, its message, and whether it left anything behind.

    python scripts/bad_inputs.py [--only SUBSTRING] [--out table.md]

Every case runs as its own process in a fresh working directory that links the checkout's
``configs/`` and ``data/`` (so ``./mlflow.db`` and outputs there belong to that case) with
the micro configs, so a case that is not caught
early still ends within a minute or two. Columns:

- ``rc``: exit status; ``s``: seconds; ``ray``: a Ray instance was started or joined;
- ``runs``: MLflow runs created (in the case's ``./mlflow.db``), with their status;
- ``left``: files left under the case's output path;
- ``message``: the last line the process printed (the error a user reads).

Issue 19 lists what each class should do: stop before Ray/MLflow/outputs, with a message
that names the input. The harness judges nothing; the table is read.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
JOB = {j: [PY, "-m", f"ray_jobs.{j}"] for j in ("pretrain_backbone", "train_supernet", "search", "retrain",
                                                  "tune_tracker")}
CLI = [PY, "-m", "lighttrack.cli"]
MICRO = {"pretrain_backbone": "configs/pretrain_micro.yaml", "train_supernet": "configs/supernet_micro.yaml",
         "search": "configs/search_micro.yaml", "retrain": "configs/retrain_micro.yaml"}


def fixtures(work: Path) -> dict[str, str]:
    """Checkpoints of every phase (fresh weights, saved as the loops save them) and broken
    copies of the embedded val split."""
    import numpy as np
    import torch

    from lighttrack.arch import resolve
    from lighttrack.models.static import StaticTracker
    from lighttrack.models.supernet import ClassSupernet, TrackSupernet

    f: dict[str, str] = {}
    ck = work / "ckpt"
    ck.mkdir()
    torch.save({"model": ClassSupernet().state_dict(), "epoch": 0, "eval_paths": {}}, ck / "phase1.pt")
    torch.save({"model": TrackSupernet().state_dict(), "epoch": 0}, ck / "phase2.pt")
    torch.save({"model": StaticTracker.build(resolve("lighttrack-mobile")).state_dict(), "epoch": 0,
                "stage": "finetune"}, ck / "phase4.pt")
    (ck / "notes.pt").write_text("these are my notes, not a checkpoint\n")
    data = (ck / "phase2.pt").read_bytes()
    (ck / "truncated.pt").write_bytes(data[: len(data) // 2])
    f |= {k: str(ck / f"{k}.pt") for k in ("phase1", "phase2", "phase4", "notes", "truncated")}

    # got10k-layout root with the embedded val split and broken variants of it
    src = ROOT / "data/synth/got10k/val"
    root = work / "got10k"
    shutil.copytree(src, root / "val")
    names = (root / "val/list.txt").read_text().split()

    def variant(name: str, edit) -> None:  # GOT-10k splits are train/val/test: one root per variant
        shutil.copytree(root / "val", work / name / "val")
        edit(work / name / "val")

    def bad_last(d: Path) -> None:
        (d / "list.txt").write_text("\n".join(names + ["GOT-10k_Val_999999"]) + "\n")

    def outside(d: Path) -> None:
        gt = d / names[-1] / "groundtruth.txt"
        lines = gt.read_text().splitlines()
        gt.write_text("\n".join(["5000.0,5000.0,20.0,20.0"] + lines[1:]) + "\n")

    def corrupt(d: Path) -> None:
        frames = sorted((d / names[-1]).glob("*.jpg"))
        frames[len(frames) // 2].write_bytes(b"\xff\xd8 not a jpeg")

    def bad_line(d: Path) -> None:
        gt = d / names[-1] / "groundtruth.txt"
        lines = gt.read_text().splitlines()
        lines[3] = "12,abc,30,40"
        gt.write_text("\n".join(lines) + "\n")

    def box_out(d: Path) -> None:  # a later box wholly outside the image
        gt = d / names[0] / "groundtruth.txt"
        lines = gt.read_text().splitlines()
        lines[5] = "9000,9000,30,40"
        gt.write_text("\n".join(lines) + "\n")

    for split, edit in (("badlast", bad_last), ("outside", outside), ("corrupt", corrupt),
                        ("badline", bad_line), ("boxout", box_out)):
        variant(split, edit)
        f[split] = str(work / split)
    f["got10k"] = str(root)
    f["frames_corrupt"] = str(work / "corrupt" / "val" / names[-1])
    f["frames"] = str(root / "val" / names[0])
    (work / "empty").mkdir()
    f["empty"] = str(work / "empty")
    (work / "bad.yaml").write_text("epochs: [1, 2\n")
    f["bad_yaml"] = str(work / "bad.yaml")
    (work / "tracker.yaml").write_text("window_influence: 3.0\n")
    f["bad_tracker"] = str(work / "tracker.yaml")
    # root writes through any mode bits: a path under a regular file cannot be created by anyone
    (work / "a-file").write_text("x")
    f["readonly"] = str(work / "a-file")
    np.random.seed(0)
    return f


def _on(argv: list[str], root: str) -> list[str]:
    """``argv`` with its ``--dataset`` replaced by ``root``."""
    i = argv.index("--dataset")
    return argv[:i + 1] + [root] + argv[i + 2:]


def cases(f: dict[str, str]) -> list[tuple[str, str, list[str]]]:
    """(class, name, argv) with ``{out}`` standing for the case's output path."""
    sup = JOB["train_supernet"] + ["--config", MICRO["train_supernet"], "--name", "bi", "--storage-path", "{out}"]
    pre = JOB["pretrain_backbone"] + ["--config", MICRO["pretrain_backbone"], "--name", "bi", "--storage-path", "{out}"]
    ret = JOB["retrain"] + ["--config", MICRO["retrain"], "--name", "bi", "--storage-path", "{out}"]
    sea = JOB["search"] + ["--config", MICRO["search"], "--name", "bi", "--storage-path", "{out}",
                           "--flops-max", "600M", "--params-max", "2M"]
    sea_ok = sea + ["--supernet", f["phase2"]]
    ev = CLI + ["evaluate", "--arch", "lighttrack-mobile", "--dataset", f["got10k"], "--out", "{out}"]
    ex = CLI + ["export", "--arch", "lighttrack-mobile", "--out", "{out}", "--no-torch-export"]
    tr = CLI + ["track", "--arch", "lighttrack-mobile", "--out", "{out}/video.mp4"]
    tune = JOB["tune_tracker"] + ["--arch", "lighttrack-mobile", "--dataset", f["got10k"], "--out", "{out}/t.yaml",
                                  "--num-samples", "2"]
    init = ["--set", f"init={f['phase1']}"]
    return [
        # 1. config values
        ("value", "supernet epochs=-1", sup + init + ["--set", "epochs=-1"]),
        ("value", "supernet epochs=0", sup + init + ["--set", "epochs=0"]),
        ("value", "supernet optim.name=adamx", sup + init + ["--set", "optim.name=adamx"]),
        ("value", "supernet batch_size=0", sup + init + ["--set", "batch_size=0"]),
        ("value", "supernet optim.lr=-0.1", sup + init + ["--set", "optim.lr=-0.1"]),
        ("value", "supernet schedule.decay=exp", sup + init + ["--set", "schedule.decay=exp"]),
        ("value", "supernet run.use_gpu=maybe", sup + init + ["--set", "run.use_gpu=maybe"]),
        ("value", "supernet run.amp=fp8", sup + init + ["--set", "run.amp=fp8"]),
        ("value", "supernet eval.every=0", sup + init + ["--set", "eval.every=0"]),
        ("value", "supernet data.sources kind=imdb", sup + init + ["--set", "data.sources=[{kind: imdb}]"]),
        ("value", "supernet frame_range=-3", sup + init + ["--set", "data.sources=[{frame_range: -3}]"]),
        ("value", "pretrain batch_size=-8", pre + ["--set", "batch_size=-8"]),
        ("value", "pretrain model.dropout=1.5", pre + ["--set", "model.dropout=1.5"]),
        ("value", "pretrain schedule log final_lr=0", pre + ["--set", "schedule.decay=log", "--set",
                                                              "schedule.final_lr=0"]),
        ("value", "pretrain --num-workers 0", pre + ["--num-workers", "0"]),
        ("value", "retrain finetune.epochs=0", ret + ["--set", "arch=lighttrack-mobile",
                                                      "--set", "finetune.epochs=0"]),
        ("value", "retrain retrain.ema_decay=2", ret + ["--set", "arch=lighttrack-mobile",
                                                        "--set", "retrain.ema_decay=2"]),
        ("value", "search optimizer.mutation_prob=2", sea_ok + ["--set", "optimizer.mutation_prob=2"]),
        ("value", "search workers=0", sea_ok + ["--set", "workers=0"]),
        ("value", "search eval.val_frames=-5", sea_ok + ["--set", "eval.val_frames=-5"]),
        ("value", "search optimizer.name=NoSuchOpt", sea_ok + ["--set", "optimizer.name=NoSuchOpt"]),
        ("value", "search --workers -2", sea_ok + ["--workers", "-2"]),
        ("value", "evaluate --max-sequences -1", ev + ["--max-sequences", "-1"]),
        ("value", "evaluate --threads 0", ev + ["--threads", "0", "--max-sequences", "1"]),
        ("value", "track --fps 0", tr + ["--frames", f["frames"], "--init", "10,10,20,20", "--fps", "0"]),
        ("value", "export --calibration 0", ex + ["--int8", "--dataset", f["got10k"], "--calibration", "0"]),
        ("value", "tune --num-samples 0", tune + ["--num-samples", "0"]),
        ("value", "config file not YAML", sup + ["--config", f["bad_yaml"]]),
        # 2. inputs checked before work
        ("input", "supernet init=phase-4 ckpt", sup + ["--set", f"init={f['phase4']}"]),
        ("input", "supernet init=missing file", sup + ["--set", "init=/nonexistent/ckpt.pt"]),
        ("input", "supernet data root missing", sup + init + ["--set", "data.sources=[{root: /nonexistent}]"]),
        ("input", "supernet eval.root missing", sup + init + ["--set", "eval.root=/nonexistent"]),
        ("input", "supernet eval.tracker=nopreset", sup + init + ["--set", "eval.tracker=nopreset"]),
        ("input", "supernet eval.paths bad arch", sup + init + ["--set", "eval.paths=[not-an-arch]"]),
        ("input", "search --supernet phase-1 ckpt", sea + ["--supernet", f["phase1"]]),
        ("input", "search eval.val_root missing", sea_ok + ["--set", "eval.val_root=/nonexistent"]),
        ("input", "search eval.val_split missing", sea_ok + ["--set", "eval.val_split=nosuch"]),
        ("input", "search eval.tracker bad YAML", sea_ok + ["--set", f"eval.tracker={f['bad_tracker']}"]),
        ("input", "search latency budget no table", sea_ok + ["--latency-max", "5"]),
        ("input", "pretrain data_root missing", pre + ["--set", "data_root=/nonexistent"]),
        ("input", "pretrain data_root empty", pre + ["--set", f"data_root={f['empty']}"]),
        ("input", "retrain arch=missing best_arch", ret + ["--set", "arch=/nonexistent/best_arch.json"]),
        ("input", "retrain supernet=phase-1 ckpt", ret + ["--set", "arch=lighttrack-mobile",
                                                         "--set", f"supernet={f['phase1']}",
                                                         "--set", "finetune.head_init=supernet"]),
        ("input", "evaluate bad last list entry", _on(ev, f["badlast"])),
        ("input", "evaluate first box outside", _on(ev, f["outside"])),
        ("input", "evaluate bad groundtruth line", _on(ev, f["badline"])),
        ("input", "evaluate --checkpoint phase-1", ev + ["--checkpoint", f["phase1"], "--max-sequences", "1"]),
        ("input", "data check box outside image", CLI + ["data", "check", f["boxout"]]),
        ("input", "data check first box outside", CLI + ["data", "check", f["outside"]]),
        ("input", "track first box outside", tr + ["--frames", f["frames"], "--init", "5000,5000,20,20"]),
        ("input", "track --init 3 values", tr + ["--frames", f["frames"], "--init", "10,10,20"]),
        ("input", "track empty frames folder", tr + ["--frames", f["empty"], "--init", "10,10,20,20"]),
        ("input", "export --dataset broken split", ex + ["--dataset", f["badlast"]]),
        ("input", "tune bad last list entry", _on(tune, f["badlast"])),
        # 3. nothing that failed looks finished
        ("output", "evaluate corrupt frame mid-split", _on(ev, f["corrupt"])),
        ("output", "track corrupt frame", tr + ["--frames", f["frames_corrupt"], "--init", "10,10,20,20"]),
        ("output", "export --dataset corrupt frame", ex + ["--dataset", f["corrupt"]]),
        # 4. errors, not tracebacks
        ("error", "evaluate --checkpoint not a ckpt", ev + ["--checkpoint", f["notes"]]),
        ("error", "evaluate --checkpoint truncated", ev + ["--checkpoint", f["truncated"]]),
        ("error", "search --supernet truncated", sea + ["--supernet", f["truncated"]]),
        ("error", "supernet init=not a ckpt", sup + ["--set", f"init={f['notes']}"]),
        ("error", "evaluate --split nosuch", ev + ["--split", "nosuch"]),
        ("error", "evaluate --tracker nopreset", ev + ["--tracker", "nopreset"]),
        ("error", "evaluate --out unwritable", CLI + ["evaluate", "--arch", "lighttrack-mobile", "--dataset",
                                                      f["got10k"], "--out", f["readonly"] + "/res"]),
        ("error", "track --out unwritable", CLI + ["track", "--arch", "lighttrack-mobile", "--frames", f["frames"],
                                                   "--init", "10,10,20,20", "--out", f["readonly"] + "/v.mp4"]),
        ("error", "export --out unwritable", CLI + ["export", "--arch", "lighttrack-mobile", "--no-torch-export",
                                                    "--out", f["readonly"] + "/exp"]),
        ("error", "evaluate --arch unknown preset", CLI + ["evaluate", "--arch", "lighttrack-huge", "--dataset",
                                                           f["got10k"], "--out", "{out}"]),
        ("error", "pipeline --size huge", [PY, "-m", "devcluster.pipeline", "--size", "huge", "--out", "{out}"]),
    ]


def _mlflow_runs(db: Path) -> str:
    if not db.exists():
        return "-"
    try:
        with sqlite3.connect(db) as c:
            rows = c.execute("select status from runs").fetchall()
    except sqlite3.Error:
        return "db"
    return ",".join(r[0] for r in rows) or "0"


def run_case(argv: list[str], cwd: Path, timeout: float) -> dict:
    out = cwd / "out"
    argv = [a.replace("{out}", str(out)) for a in argv]
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_DISABLE_USAGE_STATS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    t = time.perf_counter()
    # its own process group: a local Ray's daemons go with the case, however it ends
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try:
        text, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    dt = time.perf_counter() - t
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            break
        time.sleep(3)
    if rc == "timeout":
        text = p.communicate()[0]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) if out.exists() else []
    return {"rc": rc, "s": dt, "ray": "Started a local Ray instance" in text or "Connected to Ray" in text,
            "runs": _mlflow_runs(cwd / "mlflow.db"), "left": len(left),
            "traceback": "Traceback (most recent call last)" in text,
            "message": (lines[-1] if lines else "")[:160]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="run only cases whose name contains this")
    ap.add_argument("--out", default="", help="also write the table (Markdown) here")
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bad-inputs-"))
    f = fixtures(work)
    rows = ["| class | input | rc | s | ray | MLflow runs | files left | traceback | message |",
            "|---|---|---|---|---|---|---|---|---|"]
    for cls, name, argv in cases(f):
        if args.only and args.only not in name:
            continue
        cwd = Path(tempfile.mkdtemp(prefix="case-", dir=work))
        for name_ in ("configs", "data"):  # as if started in a checkout
            (cwd / name_).symlink_to(ROOT / name_)
        r = run_case(argv, cwd, args.timeout)
        row = (f"| {cls} | {name} | {r['rc']} | {r['s']:.0f} | {'yes' if r['ray'] else 'no'} | {r['runs']} | "
               f"{r['left']} | {'yes' if r['traceback'] else 'no'} | {r['message'].replace('|', '/')} |")
        rows.append(row)
        print(row, flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(rows) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
