from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from lighttrack.config import ConfigError, load


@dataclass
class Optim:
    lr: float = 0.1  # learning rate
    steps: int = 10  # number of steps


@dataclass
class Job:
    name: str = "x"  # job name
    optim: Optim = field(default_factory=lambda: Optim(lr=0.5))  # nested section
    sizes: tuple[int, ...] = (1, 2)  # a list


def test_defaults_and_partial_nested_override_keeps_field_default():
    cfg = load(Job, overrides=["optim.steps=3"])
    assert cfg.optim == Optim(lr=0.5, steps=3)  # lr from the field default, not the class default


def test_yaml_file_and_types(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: run\noptim:\n  lr: 1e-2\nsizes: [3, 4]\n")
    cfg = load(Job, p, ["optim.steps=7"])
    assert (cfg.name, cfg.optim.lr, cfg.optim.steps, cfg.sizes) == ("run", 0.01, 7, (3, 4))


@pytest.mark.parametrize("text, needle", [
    ("nmae: run\n", "nmae"),
    ("optim:\n  lrr: 1\n", "lrr"),
    ("optim:\n  steps: many\n", "optim.steps"),
    ("- a\n- b\n", "mapping"),
    ("optim: [1\n", "YAML"),
])
def test_bad_files_name_the_key(tmp_path, text, needle):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=needle) as e:
        load(Job, p)
    assert "bad.yaml" in str(e.value)


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        load(Job, overrides=["optim.lr"])
    with pytest.raises(ConfigError, match="not found"):
        load(Job, tmp_path / "nope.yaml")


@dataclass
class Inputs:
    run: str = ""  # an MLflow run id
    maybe: str | None = None  # optional id
    n: int = 1  # a number


def test_overrides_keep_string_fields_verbatim_and_parse_others():
    cfg = load(Inputs, overrides=["run=123e45", "maybe=0012", "n=7"])
    assert (cfg.run, cfg.maybe, cfg.n) == ("123e45", "0012", 7)
    assert load(Inputs, overrides=["maybe=null"]).maybe is None


def test_quoted_string_override_loses_its_quotes():
    assert load(Inputs, overrides=["run='00123'"]).run == "00123"


# What every config resolved to before the size variants listed only what differs (issue 35):
# the file of values, written from the configs as they were, 2026-12-07.
RESOLVED = Path(__file__).with_name("configs_resolved.json")


def test_every_config_resolves_to_the_values_it_had_before_the_base_mechanism():
    import json

    from lighttrack.config import read_yaml, to_dict
    from lighttrack.search.config import SearchConfig
    from lighttrack.train.config import PretrainConfig, RetrainConfig, SupernetConfig

    classes = {"pretrain": PretrainConfig, "supernet": SupernetConfig, "retrain": RetrainConfig,
               "search": SearchConfig}
    want = json.loads(RESOLVED.read_text())
    files = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert sorted(p.name for p in files) == sorted(want)
    for p in files:
        kind = p.stem.split("_")[0]
        got = json.loads(json.dumps(to_dict(load(classes[kind], p)), sort_keys=True, default=str))
        assert got == want[p.name], p.name
        raw = yaml.safe_load(p.read_text())
        if p.stem != kind:  # a size variant: the full-size file plus only what differs from it
            assert raw.pop("base") == f"{kind}.yaml", p.name
            assert not _restated(raw, want[f"{kind}.yaml"]), (p.name, _restated(raw, want[f"{kind}.yaml"]))
    assert read_yaml(files[0])  # a full-size file has no base: read as it is


def _restated(raw: dict, base: dict, prefix: str = "") -> list[str]:
    """Leaf keys of ``raw`` whose value is the one ``base`` already has."""
    out = []
    for k, v in raw.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            out += _restated(v, base[k], f"{prefix}{k}.")
        elif base.get(k) == v:
            out.append(prefix + k)
    return out


def test_base_files_merge_under_and_bad_bases_are_clear_errors(tmp_path):
    from lighttrack.config import read_yaml

    (tmp_path / "a.yaml").write_text("x: 1\nsec: {p: 1, q: 2}\nlst: [1, 2]\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nsec: {q: 3}\nlst: [9]\n")
    assert read_yaml(tmp_path / "b.yaml") == {"x": 1, "sec": {"p": 1, "q": 3}, "lst": [9]}
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing.yaml \(the base of .*c.yaml\)"):
        read_yaml(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("base: e.yaml\n")
    (tmp_path / "e.yaml").write_text("base: d.yaml\n")
    with pytest.raises(ConfigError, match="makes a cycle"):
        read_yaml(tmp_path / "d.yaml")
    (tmp_path / "f.yaml").write_text("base: 3\n")
    with pytest.raises(ConfigError, match="must name a config file"):
        read_yaml(tmp_path / "f.yaml")
