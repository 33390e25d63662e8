from dataclasses import dataclass, field

import pytest

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
