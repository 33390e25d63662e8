"""Complexity: exact fvcore counts of the released definition, lookup table == fvcore."""
import json

import numpy as np
import pytest
import torch

from lighttrack.arch import resolve, sample
from lighttrack.models.complexity import (
    TABLE_PATH, ComplexityTable, count, format_quantity, parse_quantity,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def table() -> ComplexityTable:
    return ComplexityTable.default()


def test_lighttrack_mobile_exact_counts(table):
    c = count(resolve("lighttrack-mobile"))
    assert c.params == 1_969_397
    assert c.macs == 530_411_008  # conv 510,606,848 + BN 15,691,776 + pool 2,539,520 + matmul 1,572,864
    assert c.conv_macs == 510_606_848 + 1_572_864
    rows = {r.name: r for r in c.table}
    assert rows["neck.correlation"].macs == 1_572_864
    assert sum(r.params for r in c.table) == c.params and sum(r.macs for r in c.table) == c.macs
    assert sum(r.params for n, r in rows.items() if n.startswith("backbone.")) == 1_252_656
    assert table.cost(resolve("lighttrack-mobile")) == (c.params, c.macs, c.conv_macs)


def test_extremes_of_the_space(table):
    """Reported in the README; see there why they differ from the paper's 208M-1.4G / 0.2M-5.4M."""
    small, large = count(resolve("smallest")), count(resolve("largest"))
    assert (small.params, small.macs) == (206_237, 155_237_632)
    assert (large.params, large.macs) == (3_251_669, 783_154_432)
    assert table.cost(resolve("smallest")) == (small.params, small.macs, small.conv_macs)
    assert table.cost(resolve("largest")) == (large.params, large.macs, large.conv_macs)
    rng = np.random.default_rng(0)
    costs = [table.cost(sample(rng)) for _ in range(2000)]
    assert min(c[0] for c in costs) >= small.params and max(c[0] for c in costs) <= large.params
    assert min(c[1] for c in costs) >= small.macs and max(c[1] for c in costs) <= large.macs


def test_table_equals_fvcore_on_random_archs(table):
    rng = np.random.default_rng(2024)
    for _ in range(50):
        a = sample(rng)
        c = count(a)
        assert table.cost(a) == (c.params, c.macs, c.conv_macs), str(a)


def test_shipped_table_equals_a_fresh_build(table):
    assert TABLE_PATH.exists()
    fresh = ComplexityTable.build()
    assert json.loads(json.dumps(fresh.to_dict())) == json.loads(TABLE_PATH.read_text())
    assert table.feasible(resolve("lighttrack-mobile"), parse_quantity("600M"), parse_quantity("2M"))
    assert not table.feasible(resolve("lighttrack-mobile"), parse_quantity("530M"), None)
    assert not table.feasible(resolve("lighttrack-mobile"), None, parse_quantity("1.9M"))


@pytest.mark.parametrize("text,value", [
    ("600M", 600_000_000), ("2M", 2_000_000), ("1.5G", 1_500_000_000), ("800k", 800_000),
    ("800K", 800_000), ("12345", 12345), (" 530,411,008 ", 530_411_008), ("1_000", 1000),
    ("0.25M", 250_000), (7, 7),
])
def test_parse_quantity(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "M", "600X", "-5M", "1.5", "1.0000005M", "abc", "6 00M"])
def test_parse_quantity_rejects(text):
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(text)


def test_format_quantity():
    assert format_quantity(1_969_397) == "1.969M" and format_quantity(530_411_008) == "530.4M"
    assert format_quantity(999) == "999" and format_quantity(1_400_000_000) == "1.4G"


def test_cli_info_json_and_sample(capsys):
    from lighttrack.cli import main

    assert main(["arch", "info", "lighttrack-mobile", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["params"], out["macs"], out["conv_macs"]) == (1_969_397, 530_411_008, 512_179_712)
    assert out["arch"] == str(resolve("lighttrack-mobile")) and len(out["layers"]) > 30
    assert main(["arch", "sample", "--n", "5", "--flops-max", "600M", "--params-max", "2M",
                 "--seed", "0", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 5 and all(r["macs"] <= 600e6 and r["params"] <= 2e6 for r in rows)
    assert all(ComplexityTable.default().cost(resolve(r["arch"]))[:2] == (r["params"], r["macs"]) for r in rows)
    assert main(["arch", "info", "bb:k9e4"]) == 2
    assert "expected fields" in capsys.readouterr().err
    assert main(["arch", "sample", "--flops-max", "1M"]) == 2
    assert "too tight" in capsys.readouterr().err
    assert main(["arch", "sample", "--flops-max", "lots"]) == 2
    assert "quantity" in capsys.readouterr().err


def test_table_equals_fvcore_on_wide_space_archs(table):
    """Stride-8 outputs: a 256-position correlation and heads on 32x32 maps; the table
    keeps head costs per stride, so it stays exact."""
    rng = np.random.default_rng(7)
    archs = [a for a in (sample(rng, "wide") for _ in range(200)) if a.stride == 8][:10]
    assert len(archs) == 10
    for a in archs:
        c = count(a)
        assert table.cost(a) == (c.params, c.macs, c.conv_macs), str(a)
        assert {r.name for r in c.table} >= {"neck.bn_z.c40", "neck.correlation"}


def test_wide_space_extremes():
    """The stage-2 cut with the largest heads is the wide space's most expensive path
    (heads on 32x32 maps): 1.43G MACs, the paper's "1.4G" upper end (see README)."""
    from lighttrack.arch import Arch, HeadArch
    big = HeadArch(256, (1,) * 8)
    top = count(Arch((5,) * 6, big, big))
    assert (top.params, top.macs) == (1_522_309, 1_432_020_224)
    table = ComplexityTable.default()
    rng = np.random.default_rng(0)
    costs = [table.cost(sample(rng, "wide")) for _ in range(2000)]
    assert max(c[1] for c in costs) <= top.macs
    assert min(c[0] for c in costs) >= count(resolve("smallest")).params


def test_one_enumeration_of_cost_keys():
    """The cost keys an architecture enumerates are exactly the entries the tables hold and
    the profiler times: the covering archs use every key of their strides, a table file
    round-trips through its nested form, and the profiler's timed steps of random wide
    architectures carry their cost keys in execution order."""
    from lighttrack.costs import all_keys, flatten, nest
    from lighttrack.models import StaticTracker
    from lighttrack.models.complexity import covering_archs
    from lighttrack.search.profiler import _steps

    used = {k for a in covering_archs() for k in a.cost_keys()}
    assert used == all_keys((8, 16))
    assert {k for a in covering_archs() if a.stride == 16 for k in a.cost_keys()} == all_keys((16,))
    table = ComplexityTable.default()
    assert set(table.macs.values) == all_keys((8, 16))
    flat = {k: [table.params.values[k], table.macs.values[k], table.conv_macs.values[k]] for k in used}
    assert flatten(json.loads(json.dumps(nest(flat)))) == flat
    rng = np.random.default_rng(3)
    for a in (sample(rng, "wide") for _ in range(5)):
        steps = [key for key, *_ in _steps(StaticTracker.build(a))]
        assert tuple(dict.fromkeys(steps)) == a.cost_keys(), str(a)  # the neck is timed in two parts
        skips = sum(op == 2 for h in (a.cls, a.reg) for op in h.ops)
        assert len(a.cost_keys()) == 2 + len(a.backbone) + 2 * 9 - skips
