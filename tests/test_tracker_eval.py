"""evaluate_split end to end on the embedded dataset: oracle AO, toolkit equality,
OTB protocol for folder layouts, and the evaluate / track / export commands."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from lighttrack.cli import main
from lighttrack.tracker import PRESETS, Tracker
from lighttrack.tracker.evaluation import evaluate_split, open_split

from test_metrics import toolkit_report
from tracker_oracle import OracleNet

synth = pytest.importorskip("lighttrack.data.synth")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Path:
    """The embedded dataset (tiny size) written by the data area's generator."""
    root = tmp_path_factory.mktemp("embedded")
    synth.write(root, seed=0, size="tiny", workers=1)
    return root


def _oracle_run(dataset, out: Path, params=PRESETS["vot2019"]) -> dict:
    oracle = OracleNet([dataset.sequence(i).boxes for i in range(len(dataset))])
    tracker = Tracker(oracle, params)
    oracle.tracker = tracker
    return evaluate_split(tracker, dataset, out, params)


def test_oracle_reaches_ao_09_on_the_embedded_val_split_and_matches_the_toolkit(embedded, tmp_path):
    dataset = open_split(embedded, "val")
    assert type(dataset).__name__ == "Got10k" and len(dataset) >= 3
    out = tmp_path / "results" / "GOT-10k" / "oracle"
    scores = _oracle_run(dataset, out)
    assert scores["protocol"] == "got10k"
    assert scores["ao"] >= 0.9, scores
    names = dataset.sequence_names
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(names)
    first = np.loadtxt(out / names[0] / f"{names[0]}_001.txt", delimiter=",")
    np.testing.assert_allclose(first[0], dataset.sequence(0).boxes[0], atol=5e-4)
    # the official toolkit reads the same files and reports the same numbers
    theirs = toolkit_report(embedded / "got10k", tmp_path / "results", "oracle")
    assert scores["ao"] == pytest.approx(theirs["ao"], abs=1e-12)
    assert scores["sr50"] == pytest.approx(theirs["sr"], abs=1e-12)
    assert scores["sr75"] == pytest.approx(theirs["succ_curve"][75], abs=1e-12)
    assert scores["fps"] == pytest.approx(theirs["speed_fps"], rel=1e-9)


def test_folder_layout_is_scored_with_the_otb_protocol(embedded, tmp_path):
    # the val sequences copied into a generic "folders of frames + groundtruth.txt" layout
    src = embedded / "got10k" / "val"
    for name in (src / "list.txt").read_text().split():
        dst = tmp_path / "folders" / name
        dst.mkdir(parents=True)
        for f in (src / name).iterdir():
            if f.suffix in (".jpg", ".txt"):
                shutil.copy(f, dst / f.name)
    dataset = open_split(tmp_path / "folders")
    assert type(dataset).__name__ == "FolderSequences"
    scores = _oracle_run(dataset, tmp_path / "out")
    assert scores["protocol"] == "otb"
    assert scores["success_auc"] >= 0.85 and scores["precision"] >= 0.9, scores
    assert len(scores["success_curve"]) == 21


def test_evaluate_command_with_fresh_weights(embedded, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["evaluate", "--dataset", str(embedded), "--split", "val", "--arch", "smallest",
               "--max-sequences", "2", "--out", str(out)])
    assert rc == 0
    scores = json.loads((out / "scores.json").read_text())
    assert {"ao", "sr50", "sr75", "fps"} <= set(scores) and 0 <= scores["ao"] <= 1 and scores["fps"] > 0
    assert (out / "success.png").is_file()
    assert '"ao"' in capsys.readouterr().out
    # bad input: one clear line naming the problem
    rc = main(["evaluate", "--dataset", str(tmp_path / "nowhere"), "--arch", "smallest", "--out", str(out)])
    assert rc == 2 and "nowhere" in capsys.readouterr().err
    rc = main(["evaluate", "--dataset", str(embedded), "--arch", "bb:nonsense", "--out", str(out)])
    assert rc == 2 and "bb:nonsense" in capsys.readouterr().err


def test_test_split_gets_result_files_and_fps_only(embedded, tmp_path):
    out = tmp_path / "test"
    assert main(["evaluate", "--dataset", str(embedded), "--split", "test", "--arch", "smallest",
                 "--max-sequences", "1", "--out", str(out)]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["scored"] is False and scores["fps"] > 0 and "ao" not in scores
    name = open_split(embedded, "test").sequence_names[0]
    n = len(list((embedded / "got10k" / "test" / name).glob("*.jpg")))
    assert np.loadtxt(out / name / f"{name}_001.txt", delimiter=",").shape == (n, 4)


def test_track_command_writes_a_video_with_every_frame(embedded, tmp_path, capsys):
    seq_dir = embedded / "got10k" / "val" / "GOT-10k_Val_000001"
    n = len(list(seq_dir.glob("*.jpg")))
    x, y, w, h = np.loadtxt(seq_dir / "groundtruth.txt", delimiter=",")[0]
    out = tmp_path / "demo.mp4"
    rc = main(["track", "--frames", str(seq_dir), "--init", f"{x},{y},{w},{h}", "--arch", "smallest",
               "--out", str(out), "--boxes", str(tmp_path / "boxes.txt")])
    assert rc == 0 and "fps" in capsys.readouterr().out
    cap = cv2.VideoCapture(str(out))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert frames == n
    assert np.loadtxt(tmp_path / "boxes.txt", delimiter=",").shape == (n, 4)
    rc = main(["track", "--frames", str(seq_dir), "--init", "1,2,3", "--arch", "smallest", "--out", str(out)])
    assert rc == 2 and "x,y,w,h" in capsys.readouterr().err


def test_export_command_writes_card_with_ao(embedded, tmp_path):
    out = tmp_path / "export"
    rc = main(["export", "--arch", "smallest", "--out", str(out), "--no-torch-export", "--dataset",
               str(embedded), "--max-sequences", "1", "--run", "run-1", "--supernet", "sn", "--int8",
               "--calibration", "4"])
    assert rc == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["scores"]["split"] == "val" and 0 <= card["scores"]["ao"] <= 1
    assert set(card["files"]["onnx_int8"]) == {"template", "search_256", "search_288"}
    assert card["scores"]["ao_change_int8"] == pytest.approx(card["scores"]["int8"]["ao"] - card["scores"]["ao"])
    assert card["params"] > 0 and card["macs"] > 0
    assert card["source"] == {"checkpoint": None, "supernet": "sn", "run": "run-1"}
    # and the export runs under the evaluate command's onnxruntime backend
    rc = main(["evaluate", "--dataset", str(embedded), "--arch", "smallest", "--checkpoint", str(out),
               "--backend", "onnxruntime", "--max-sequences", "1", "--out", str(tmp_path / "ev")])
    assert rc == 0
    assert json.loads((tmp_path / "ev" / "scores.json").read_text())["ao"] == pytest.approx(card["scores"]["ao"],
                                                                                          abs=1e-3)


def test_boxes_are_scored_in_memory_as_their_files_would_be(embedded, tmp_path):
    """No out_dir: nothing written, the scores of the written files all the same (boxes to
    3 decimals, seconds to 8, as read back); the split read once serves another run."""
    from lighttrack.tracker.evaluation import read_split, score_results, score_tracks

    from tracker_oracle import ColourNet

    dataset = open_split(embedded, "val")
    sequences = read_split(dataset)
    net, params = ColourNet(), PRESETS["vot2019"]
    before = set(tmp_path.iterdir())
    memory = evaluate_split(net, dataset, None, params, sequences=sequences)
    assert set(tmp_path.iterdir()) == before  # no result files, no temporary folder here
    files = evaluate_split(net, dataset, tmp_path / "out", params, plot=False)
    for k in ("ao", "sr50", "sr75", "baseline_ao", "frames", "success_curve"):
        assert memory[k] == files[k], k
    assert files == score_results(tmp_path / "out", dataset, plot=False)
    assert json.loads((tmp_path / "out" / "scores.json").read_text()) == files
    # score_tracks: any boxes held in memory, here the written ones with their times
    from lighttrack.tracker.evaluation import read_results

    tracks = {name: read_results(tmp_path / "out", name) for name in dataset.sequence_names}
    assert score_tracks(dataset, tracks, sequences=sequences) == files
    with pytest.raises(KeyError, match=dataset.sequence_names[0]):
        score_tracks(dataset, {n: t for n, t in tracks.items() if n != dataset.sequence_names[0]})
