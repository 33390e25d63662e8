"""tests/test_runtimes.py in a pytest process of its own (see the note at its top)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_runtime_tests_pass_in_a_process_of_their_own(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "LIGHTTRACK_TEST_PROCESS": "runtimes"}
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path),
                        "tests/test_runtimes.py"], cwd=root, env=env, capture_output=True, text=True, timeout=1200)
    print(p.stdout[-3000:])
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-2000:]
    assert " passed" in p.stdout.splitlines()[-1] and "failed" not in p.stdout.splitlines()[-1]
