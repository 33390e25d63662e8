"""cluster/: launcher YAMLs against the schema inside the installed ray; k8s manifests by structure."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"


def _load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


@pytest.mark.parametrize("name,provider", [("aws.yaml", "aws"), ("gcp.yaml", "gcp")])
def test_launcher_config_matches_ray_schema(name, provider):
    cfg = _load(name)
    jsonschema.validate(cfg, json.loads(SCHEMA.read_text()))  # raises with the failing path
    assert cfg["provider"]["type"] == provider
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    workers = {k: v for k, v in types.items() if k != cfg["head_node_type"]}
    gpu = [v for v in workers.values() if v["resources"].get("GPU", 0) > 0]
    cpu = [v for v in workers.values() if v["resources"].get("GPU", 0) == 0]
    assert gpu and cpu, "needs both a CPU and a GPU worker type"
    for w in workers.values():  # autoscale from zero, on spot/preemptible capacity
        assert w["min_workers"] == 0 and w["max_workers"] > 0
        nc = w["node_config"]
        spot = nc.get("InstanceMarketOptions", {}).get("MarketType") == "spot" or \
            {"preemptible": True} in nc.get("scheduling", [])
        assert spot, f"{name}: worker {w} is not spot/preemptible"
    setup = " ".join(cfg["setup_commands"])
    assert "torch==2.14.1" in setup and "torchvision==0.29.1" in setup and "~/lighttrack" in setup
    assert cfg["file_mounts"]["~/lighttrack"] == "."
    starts = " ".join(cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"])
    assert starts.count("RAY_AUTH_MODE=token") >= 4  # token auth on every node
    assert "--dashboard-host=127.0.0.1" in starts  # dashboard only through the SSH tunnel
    assert "mlflow server" in starts


def test_schema_rejects_a_broken_config():
    # The check is real: a misspelt key is caught by the same schema.
    cfg = _load("aws.yaml")
    cfg["available_node_types"]["gpu_worker"]["min_worker"] = 0
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        jsonschema.validate(cfg, json.loads(SCHEMA.read_text()))


def _containers(pod_template: dict) -> list[dict]:
    containers = pod_template["spec"]["containers"]
    assert containers and all(c.get("name") and c.get("image") for c in containers)
    return containers


def _check_raycluster_spec(spec: dict) -> None:
    assert spec["rayVersion"] == ray.__version__
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    containers = _containers(head["template"])
    groups = spec["workerGroupSpecs"]
    assert groups
    for g in groups:
        assert g["groupName"] and isinstance(g["rayStartParams"], dict)
        assert g["minReplicas"] == 0 and g["maxReplicas"] > 0 and g["replicas"] == 0
        containers += _containers(g["template"])
    for c in containers:  # token auth everywhere, from a secret
        env = {e["name"]: e for e in c.get("env", [])}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "lighttrack-ray-token"
        assert c["image"].startswith(f"rayproject/ray:{ray.__version__}")
    assert any(c["resources"]["limits"].get("nvidia.com/gpu") for g in groups
               for c in g["template"]["spec"]["containers"])


def test_kuberay_raycluster_structure():
    doc = _load("kuberay-raycluster.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    assert doc["metadata"]["name"]
    _check_raycluster_spec(doc["spec"])
    assert doc["spec"]["headGroupSpec"]["serviceType"] == "ClusterIP"


def test_kuberay_rayjob_structure():
    doc = _load("kuberay-rayjob.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    spec = doc["spec"]
    assert spec["entrypoint"].startswith("python -m ray_jobs.")
    module = spec["entrypoint"].split()[2]
    script = module.replace(".", "/") + ".py"
    assert (CLUSTER.parent / script).is_file(), f"{module}: {script} does not exist"
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"] and "torch==2.14.1" in runtime_env["pip"]
    assert "MLFLOW_TRACKING_URI" in runtime_env["env_vars"]
    assert spec["shutdownAfterJobFinishes"] is True
    _check_raycluster_spec(spec["rayClusterSpec"])
