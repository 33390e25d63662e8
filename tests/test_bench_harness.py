"""bench/harness.py: what every bench's figures rest on (timing, the ratio line, the JSON),
and the rule that benches share helpers through bench modules, not through each other."""
from __future__ import annotations

import ast
import json
import math
import sys
import time

import pytest

from tests.home import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import harness  # noqa: E402


def test_timeit_runs_warmup_then_each_repeat_timed_alone():
    calls = []
    t = harness.timeit(lambda: calls.append(len(calls)) or len(calls), repeats=5, warmup=2)
    assert len(calls) == 7 and len(t.wall) == len(t.cpu) == 5
    assert t.result == 7  # the last call's value
    assert harness.timeit(lambda: calls.append(0), repeats=1, warmup=0).wall and len(calls) == 8


def test_median_and_spread_order_known_sleeps():
    short = harness.timeit(lambda: time.sleep(0.005), repeats=3, warmup=0)
    long = harness.timeit(lambda: time.sleep(0.05), repeats=3, warmup=0)
    assert 0.005 <= short.median < long.median and long.median >= 0.05  # a sleep is never shorter
    assert long.cpu_median < long.median  # asleep: wall time passes, CPU time hardly
    t = harness.Timing((4.0, 1.0, 3.0, 2.0, 100.0))
    assert t.median == 3.0 and t.iqr == 2.0  # an outlier moves neither
    assert harness.Timing((0.5,)).iqr == 0.0


def test_parser_shares_json_and_repeats_only_where_asked(tmp_path):
    args = harness.parser("A bench.\n\nmore", repeats=7).parse_args(["--json", str(tmp_path / "f.json")])
    assert args.repeats == 7 and args.json == tmp_path / "f.json"
    assert harness.parser("A bench.", repeats=7).parse_args(["--repeats", "2"]).repeats == 2
    plain = harness.parser("A bench.").parse_args([])
    assert plain.json is None and not hasattr(plain, "repeats")


def _report(tmp_path, **extra):
    args = harness.parser("A bench.", repeats=3).parse_args(["--json", str(tmp_path / "out.json")])
    return harness.Report("bench_fake", args, **extra), tmp_path / "out.json"


def test_compare_prints_both_sides_and_the_ratio(tmp_path, capsys):
    report, path = _report(tmp_path)
    assert report.compare("loader", ("today", 30.0), ("replaced", 10.0), "pairs/s", note="goal 2x") == 3.0
    assert capsys.readouterr().out == "loader: today 30 pairs/s | replaced 10 pairs/s | today/replaced 3x  (goal 2x)\n"
    assert report.compare("step", ("after", 2.0), ("before", 8.0), "ms", old_over_new=True) == 4.0
    assert "| before/after 4x" in capsys.readouterr().out
    assert math.isnan(report.compare("spread", ("a", 1.0), ("b", 0.0)))
    got = json.loads(path.read_text())["loader"]
    assert got["ratio"] == 3.0 and got["ratio_of"] == "today/replaced" and got["old"] == {"label": "replaced",
                                                                                            "value": 10.0}


def test_json_holds_every_figure_and_the_machine_as_they_come(tmp_path, capsys):
    report, path = _report(tmp_path)
    report.figure("forward", 12.34567, "ms", note="1 thread", spread=0.5, threads=1)
    assert capsys.readouterr().out == "forward: 12.35 +- 0.5 ms  (1 thread)\n"
    first = json.loads(path.read_text())  # written at once: a bench that dies later keeps it
    assert first["bench"] == "bench_fake" and first["args"]["repeats"] == 3
    assert {"cpu", "cpu_count", "torch", "python", "date"} <= set(first["machine"])
    assert first["forward"] == {"value": 12.34567, "unit": "ms", "spread": 0.5, "note": "1 thread", "threads": 1}
    import numpy as np

    report.record("curve", np.arange(3) / 2)
    report.table("archs", [{"#": 0, "ms": 1.234, "arch": "bb:k3"}, {"#": 1, "ms": 10.5, "arch": "bb:k5e6"}], ms=".2f")
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["  #    ms arch", "  0  1.23 bb:k3", "  1 10.50 bb:k5e6"]
    got = json.loads(path.read_text())
    assert got["curve"] == [0.0, 0.5, 1.0] and got["archs"][1]["ms"] == 10.5 and "forward" in got
    assert "archs" in report and "missing" not in report
    with pytest.raises(ValueError, match="reserved"):
        report.record("machine", 1)


def test_no_json_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = harness.Report("bench_fake", harness.parser("A bench.").parse_args([]))
    report.figure("x", 1)
    assert list(tmp_path.iterdir()) == []


# benches that take a helper from another bench: only this one, until bench_small_recipes has
# moved its phases out (another change)
ALLOWED = {("bench_search_proof", "bench_small_recipes")}


def test_benches_do_not_import_each_other():
    found = set()
    for path in sorted((ROOT / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            found |= {(path.stem, n.split(".")[0]) for n in names if n.startswith("bench_")}
    assert found <= ALLOWED, found - ALLOWED
