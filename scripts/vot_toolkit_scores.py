"""Accuracy, robustness and EAO of result files as the VOT toolkit computes them.

Runs under the VOT toolkit's own virtual environment (it pins packages that clash with
ours: ``opencv-python``, ``attributee==0.1.9`` on Python 3.11)::

    python -m venv .venv-vot && .venv-vot/bin/pip install vot-toolkit==0.9.0 attributee==0.1.9
    .venv-vot/bin/python scripts/vot_toolkit_scores.py SEQUENCES RESULTS [--low 46 --high 291]

``SEQUENCES`` is a VOT sequences folder (``list.txt``), ``RESULTS`` holds
``<sequence>/<sequence>_001.txt`` per sequence (``lighttrack.tracker.vot.write_trajectory``).
Prints one JSON object; ``tests/test_vot.py`` compares it with ``lighttrack.tracker.vot``.
The toolkit's own analysis functions do the work; this file only walks the sequences.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from vot.analysis.supervised import compute_accuracy, compute_eao_curve, count_failures, locate_failures_inits
from vot.dataset import load_dataset
from vot.region import calculate_overlaps
from vot.tracker.results import Results, Trajectory
from vot.workspace.storage import LocalStorage


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("sequences")
    p.add_argument("results")
    p.add_argument("--low", type=int, default=46)
    p.add_argument("--high", type=int, default=291)
    p.add_argument("--burnin", type=int, default=10)
    args = p.parse_args()
    dataset = load_dataset(args.sequences)
    storage = LocalStorage(args.results)
    per, parts, weights, success = {}, [], [], []
    for name in dataset.list():
        seq = dataset[name]
        traj = Trajectory.read(Results(storage.substorage(name)), f"{name}_001").regions()
        acc, _ = compute_accuracy(traj, seq, args.burnin)
        fails, length = count_failures(traj)
        per[name] = {"accuracy": float(acc), "failures": int(fails), "length": int(length)}
        overlaps = calculate_overlaps(traj, seq.groundtruth(), seq.size)
        per[name]["overlaps"] = [float(v) for v in overlaps]
        f_idx, i_idx = locate_failures_inits(traj)
        if f_idx:  # the toolkit's EAOCurve: fragments from each initialisation to its failure
            for i in range(len(f_idx)):
                parts.append(overlaps[i_idx[i]:f_idx[i]])
                success.append(False)
                weights.append(1)
            if len(i_idx) > len(f_idx):
                parts.append(overlaps[i_idx[-1]:])
                success.append(True)
                weights.append(1)
        else:
            parts.append(overlaps)
            success.append(True)
            weights.append(1)
    curve = np.asarray(compute_eao_curve(parts, weights, success), np.float64)
    total = sum(v["length"] for v in per.values())
    print(json.dumps({
        "sequences": per,
        "accuracy": sum(v["accuracy"] * v["length"] for v in per.values()) / total,
        "robustness": sum(v["failures"] * v["length"] for v in per.values()) / total,
        "eao": float(np.mean(curve[args.low:args.high + 1])),
        "eao_curve": curve.tolist(),
    }))


if __name__ == "__main__":
    main()
