"""devcluster/services.py: the local services bind to loopback only and Ray keeps token auth on."""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from devcluster.services import LocalMlflow, _stop

pytestmark = pytest.mark.services
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def _listening(session_leader: int) -> list[tuple[str, int, str]]:
    """(ip, port, process name) of every TCP listener in the session we started."""
    out = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if os.getsid(proc.pid) != session_leader:
                continue
            for c in proc.net_connections(kind="tcp"):
                if c.status == psutil.CONN_LISTEN:
                    out.append((c.laddr.ip, c.laddr.port, proc.info["name"]))
        except (psutil.Error, ProcessLookupError):
            continue
    return out


def _get(url: str, token: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_ray_head_is_loopback_only_with_token_auth(ray_cluster):
    listeners = _listening(ray_cluster._proc.pid)
    ports = {port for _, port, _ in listeners}
    gcs_port = int(ray_cluster.address.rsplit(":", 1)[1])
    dash_port = int(ray_cluster.dashboard_url.rsplit(":", 1)[1])
    assert {gcs_port, dash_port} <= ports, listeners
    assert all(ip in LOOPBACK for ip, _, _ in listeners), listeners
    token = Path(ray_cluster.env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
    assert ray_cluster.env["RAY_AUTH_MODE"] == "token"
    assert _get(f"{ray_cluster.dashboard_url}/api/jobs/") in (401, 403)  # no token: refused
    assert _get(f"{ray_cluster.dashboard_url}/api/jobs/", "0" * 64) in (401, 403)  # wrong token
    assert _get(f"{ray_cluster.dashboard_url}/api/jobs/", token) == 200


def test_mlflow_server_is_loopback_only(mlflow_server):
    listeners = _listening(mlflow_server._proc.pid)
    assert listeners and all(ip in LOOPBACK for ip, _, _ in listeners), listeners
    assert _get(f"{mlflow_server.uri}/health") == 200


def test_stop_ends_every_process_it_started(tmp_path):
    server = LocalMlflow(tmp_path).start()
    leader = server._proc.pid
    members = [p for p in psutil.process_iter() if os.getsid(p.pid) == leader]
    assert len(members) >= 2  # mlflow CLI + uvicorn worker
    server.stop()
    alive = [p for p in members if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, alive
    _stop(None, leader_only=True)  # nothing started: a no-op


def test_a_submit_cut_short_stops_its_job(ray_cluster):
    """The job a timed-out (or interrupted) ``submit_job`` started is stopped, not left
    running orphaned on the cluster (found when a Ctrl-C'd quick start left its phase-2 driver)."""
    import re
    import subprocess
    import time

    from devcluster.services import BIN, submit_job

    with pytest.raises(subprocess.TimeoutExpired) as e:
        submit_job(ray_cluster, ["python", "-c", "import time; print('working', flush=True); time.sleep(600)"],
                   working_dir=None, timeout=15)
    (job,) = re.findall(r"Job '(raysubmit_\w+)' submitted", e.value.output)
    deadline, status = time.time() + 60, ""
    while time.time() < deadline and "stopped" not in status.lower():
        status = subprocess.run([str(BIN / "ray"), "job", "status", "--address", ray_cluster.dashboard_url, job],
                                env=ray_cluster.client_env(), capture_output=True, text=True).stdout
        time.sleep(1)
    assert "stopped" in status.lower(), status  # "Job 'raysubmit_...' was stopped"


@pytest.mark.long  # tests/test_autoscaling.py scales the same head from zero in CI
def test_an_autoscaling_head_scales_from_zero_and_back_and_stops_its_nodes():
    """Ray's own autoscaler on its fake multi-node provider, started with our head: two
    1-CPU tasks on a head with no CPUs start worker nodes of the type that fits, which stop
    after the idle timeout; stopping the head (by the id of our process) ends them all."""
    import subprocess
    import sys
    import time

    from devcluster.services import LocalRay

    head = LocalRay(num_cpus=0, idle_timeout_minutes=0.25,  # its own short /tmp folder: unix sockets
                    node_types={"cpu": {"resources": {"CPU": 1}, "max_workers": 2},
                                "accelerated": {"resources": {"CPU": 1, "accelerator": 1}, "max_workers": 1}})
    script = """
import sys, time, ray
ray.init(address=sys.argv[1])
alive = lambda: [n for n in ray.nodes() if n["Alive"]]
@ray.remote(num_cpus=1)
def where():
    time.sleep(2)
    return ray.get_runtime_context().get_node_id()
t = time.time()
nodes = set(ray.get([where.remote(), where.remote()], timeout=180))
up, peak = time.time() - t, len(alive())
t = time.time()
while len(alive()) > 1 and time.time() - t < 120:
    time.sleep(1)
print(f"UP {len(nodes)} {up:.1f} {peak} DOWN {len(alive())} {time.time() - t:.1f}")
"""
    head.start()
    try:
        p = subprocess.run([sys.executable, "-c", script, head.address], env=head.client_env(),
                           capture_output=True, text=True, timeout=400)
    finally:
        head.stop()
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("UP ")), None)
    assert line, p.stdout[-2000:] + p.stderr[-3000:]
    _, spread, up, peak, _, left, down = line.split()
    print(f"scaled 0 -> {int(peak) - 1} worker nodes in {float(up):.1f} s; back to {int(left) - 1} "
          f"{float(down):.0f} s after the tasks ended (idle timeout 15 s)")
    assert int(spread) == 2 and int(peak) == 3  # one node each, of the plain type only
    assert int(left) == 1  # only the head
    assert not [q for q in psutil.process_iter(["cmdline"])
                if str(head.root) in " ".join(q.info["cmdline"] or [])]
