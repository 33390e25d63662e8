"""The architecture value: string forms, choices encoding, sampling, malformed input."""
import numpy as np
import pytest

from lighttrack.arch import (
    DECISIONS, HEAD_CHANNELS, MBCONV_OPS, NUM_BLOCKS, OUT_BLOCKS, PAPER, PRESETS, SPACES,
    WIDE_OUT_BLOCKS, Arch, ArchError, HeadArch, get_space, parse, resolve, sample,
    sample_backbone_path, space_size,
)

WIDE = SPACES["wide"]

MOBILE = ("bb:k7e4,k7e6/k3e4,k5e4,k7e6,k3e6/k7e4,k3e4,k7e4,k7e4/k7e6,k5e4,k3e6"
          "+cls:256:k5,k5,k3,k3,k3,k3,skip,skip+reg:192:k3,k3,k3,k3,k3,k5,k5,k5")
RELEASED_MOBILE = "back_04502514044521042540+cls_211000022+reg_100000111_ops_32"


def _round_trips(a: Arch) -> None:
    assert parse(str(a)) == a
    assert str(parse(str(a))) == str(a)
    assert parse(a.to_released()) == a
    assert Arch.from_choices(a.to_choices()) == a


def test_released_mobile_matches_reference():
    a = resolve("lighttrack-mobile")
    assert a == parse(RELEASED_MOBILE) == parse(MOBILE)
    assert str(a) == MOBILE
    assert a.out_channels == 96 and a.out_block == 12 and len(a.backbone) == 13
    assert a.cls.channels == 256 and a.cls.kernels == (5, 5, 3, 3, 3, 3, None, None)
    assert a.reg.channels == 192 and a.reg.kernels == (3, 3, 3, 3, 3, 5, 5, 5)
    # stage 1: k7e4, k7e6 -> indices 4, 5 (released order k3e4, k3e6, k5e4, k5e6, k7e4, k7e6)
    assert a.blocks[:2] == ((7, 4), (7, 6))
    assert a.to_released().startswith("back_04502514044521") and a.to_released().endswith("_ops_32")


@pytest.mark.parametrize("index", range(len(DECISIONS)))
def test_round_trip_every_choice_of_every_decision(index):
    name, n = DECISIONS[index]
    base = list(resolve("largest").to_choices())
    for value in range(n):
        choices = list(base)
        choices[index] = value
        a = Arch.from_choices(choices)
        _round_trips(a)
        if name == "out" or name.startswith("bb") and int(name[2:]) < len(a.backbone):
            assert a.to_choices()[index] == value  # used decisions survive the round trip


def test_output_layer_choices_and_channels():
    for out in OUT_BLOCKS:
        a = Arch((1,) * (out + 1), HeadArch(128, (0,) * 8), HeadArch(128, (0,) * 8))
        _round_trips(a)
        assert a.out_channels == (80 if out < 10 else 96)
        assert a.to_released().endswith(f"_ops_{2 if out < 10 else 3}{out - (6 if out < 10 else 10)}")


def test_presets_and_random_round_trip():
    for name in PRESETS:
        _round_trips(resolve(name))
        assert resolve(name.upper()) == resolve(name)
    rng = np.random.default_rng(0)
    for _ in range(300):
        _round_trips(sample(rng))


def test_sampling_is_seeded_and_covers_the_space():
    a = [sample(np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    archs = [sample(rng) for _ in range(600)]
    assert {len(x.backbone) for x in archs} == {o + 1 for o in OUT_BLOCKS}
    assert {x.cls.channels for x in archs} == set(HEAD_CHANNELS)
    assert {b for x in archs for b in x.backbone} == set(range(len(MBCONV_OPS)))
    assert all(x.cls.kernels[0] is not None and x.reg.kernels[0] is not None for x in archs)
    path = sample_backbone_path(np.random.default_rng(0))
    assert len(path) == 18 and all(0 <= c < 6 for c in path)


def test_space_size_matches_paper():
    s = space_size()
    assert s["backbone"] == 6 ** 14 and s["head"] == (6 * 3 ** 7) ** 2 and s["output_layer"] == 8
    assert len(DECISIONS) == 1 + NUM_BLOCKS + 2 * 9


LARGE = resolve("largest")
BB = str(LARGE).split("+")[0]
HEADS = "+cls:128:k3,k3,k3,k3,k3,k3,k3,k3+reg:128:k3,k3,k3,k3,k3,k3,k3,k3"

MALFORMED = [
    ("", "starts with"),
    ("hello", "starts with"),
    ("bb:k3e4", "expected fields"),
    (BB + "+reg:128:k3,k3,k3,k3,k3,k3,k3,k3+cls:128:k3,k3,k3,k3,k3,k3,k3,k3", "expected fields"),
    ("bb:k9e4,k3e4/k3e4,k3e4,k3e4,k3e4/k3e4" + HEADS, "bb stage 1"),
    ("bb:k3e4,k3e4,k3e4/k3e4,k3e4,k3e4,k3e4/k3e4" + HEADS, "bb stage 1"),
    ("bb:k3e4/k3e4,k3e4,k3e4,k3e4/k3e4" + HEADS, "incomplete stage"),
    ("bb:k3e4,k3e4" + HEADS, "bb: backbone has 2 blocks"),  # too shallow: output not in stages 2-4
    ("bb:k3e4,k3e4/k3e4,k3e4,k3e4,k3e4/k3e4/k3e4/k3e4" + HEADS, "bb:"),  # 5 stages
    ("bb:k3e4,k3e4/k3e4,k3e4,k3e4,k3e4/k3e4,,k3e4" + HEADS, "bb stage 3"),
    (BB + "+cls:100:k3,k3,k3,k3,k3,k3,k3,k3+reg:128:k3,k3,k3,k3,k3,k3,k3,k3", "cls: head channels"),
    (BB + "+cls:abc:k3,k3,k3,k3,k3,k3,k3,k3+reg:128:k3,k3,k3,k3,k3,k3,k3,k3", "cls: channels"),
    (BB + "+cls:128:k3,k3,k3+reg:128:k3,k3,k3,k3,k3,k3,k3,k3", "cls: head needs 8 ops"),
    (BB + "+cls:128:skip,k3,k3,k3,k3,k3,k3,k3+reg:128:k3,k3,k3,k3,k3,k3,k3,k3", "cls: head op 0 cannot be skip"),
    (BB + "+cls:128:k3,k3,k3,k3,k3,k3,k3,k3+reg:128:k3,k7,k3,k3,k3,k3,k3,k3", "reg op 1"),
    (BB + "+cls:128+reg:128:k3,k3,k3,k3,k3,k3,k3,k3", "cls: expected"),
    ("back_0450251404452104254+cls_211000022+reg_100000111_ops_32", "back_: expected 20 digits"),
    ("back_04502514044521042540+cls_21100002+reg_100000111_ops_32", "cls_: expected 9 digits"),
    ("back_04502514044521042540+cls_211000022+reg_1000001x1_ops_32", "reg_: expected 9 digits"),
    ("back_04502514044521042540+cls_211000022+reg_100000111_ops_3", "ops_: expected 2 digits"),
    ("back_04502514044521042540+cls_211000022+reg_100000111", "released notation is"),
    ("back_04502514044521042540+cls_211000022+reg_100000111_ops_34", "ops_34"),
    ("back_04502514044521042540+cls_211000022+reg_100000111_ops_02", "ops_02"),
    ("back_04502514044521042540+cls_211000022+reg_100000111_ops_14", "ops_14"),
    ("back_09502514044521042540+cls_211000022+reg_100000111_ops_32", "back_: digit 2"),
    ("back_04502514044521042540+cls_311000022+reg_100000111_ops_32", "cls_: channel index 3"),
    ("back_04502514044521042540+cls_211000022+reg_120000111_ops_32", "reg_: head op 0 cannot be skip"),
    ("back_04502514044521042540+cls_211000032+reg_100000111_ops_32", "cls_: head op 6 = 3"),
]


@pytest.mark.parametrize("text,field", MALFORMED)
def test_malformed_string_names_the_field(text, field):
    with pytest.raises(ArchError, match=None) as info:
        parse(text)
    assert field in str(info.value), str(info.value)


def test_malformed_values():
    with pytest.raises(ArchError, match="backbone block 3 choice 6"):
        Arch((0, 0, 0, 6, 0, 0, 0, 0), HeadArch(128, (0,) * 8), HeadArch(128, (0,) * 8))
    with pytest.raises(ArchError, match="backbone has 15 blocks"):
        Arch((0,) * 15, HeadArch(128, (0,) * 8), HeadArch(128, (0,) * 8))
    with pytest.raises(ArchError, match="decision cls_ch = 3"):
        c = list(LARGE.to_choices())
        c[1 + NUM_BLOCKS] = 3
        Arch.from_choices(c)
    with pytest.raises(ArchError, match="expected 33 choices"):
        Arch.from_choices([0] * 5)
    with pytest.raises(ArchError):
        resolve("no-such-preset")


# -- the wide output-layer space (stage 2 at stride 8, as the released supernet) -------------
def test_wide_space_output_layers_strides_and_released_notation():
    assert WIDE.out_blocks == WIDE_OUT_BLOCKS == tuple(range(2, 14)) and WIDE.strides == (8, 16)
    assert PAPER.out_blocks == OUT_BLOCKS and PAPER.strides == (16,)
    assert space_size("wide")["output_layer"] == 12 and space_size("wide")["backbone"] == 6 ** 14
    for out in WIDE_OUT_BLOCKS:
        a = Arch((1,) * (out + 1), HeadArch(128, (0,) * 8), HeadArch(128, (0,) * 8))
        assert parse(str(a)) == a and parse(a.to_released()) == a
        assert WIDE.from_choices(WIDE.to_choices(a)) == a
        stage = 1 if out < 6 else 2 if out < 10 else 3
        assert a.out_channels == (40, 80, 96)[stage - 1]
        assert a.stride == (8 if stage == 1 else 16) and a.template_feature_size == 128 // a.stride
        assert a.to_released().endswith(f"_ops_{stage}{out - (2, 6, 10)[stage - 1]}")
        assert PAPER.contains(a) == (out in OUT_BLOCKS)
    # LightTrack-Mobile's choices with the released code's stage-2 output (ops_13)
    a = parse("back_04502514044521042540+cls_211000022+reg_100000111_ops_13")
    assert len(a.backbone) == 6 and a.out_channels == 40 and a.stride == 8
    assert str(a).startswith("bb:k7e4,k7e6/k3e4,k5e4,k7e6,k3e6+cls:256:")


def test_a_stride8_arch_outside_the_paper_space_is_refused_clearly():
    a = parse("bb:k3e4,k3e4/k3e4,k3e4,k3e4" + HEADS)
    with pytest.raises(ArchError, match="not in the 'paper' space.*'wide'"):
        a.to_choices()
    with pytest.raises(ArchError, match="is not one of"):
        get_space("wider")


@pytest.mark.parametrize("index", range(len(WIDE.decisions)))
def test_wide_round_trip_every_choice_of_every_decision(index):
    name, n = WIDE.decisions[index]
    base = list(WIDE.to_choices(LARGE))
    for value in range(n):
        choices = list(base)
        choices[index] = value
        a = WIDE.from_choices(choices)
        assert WIDE.from_choices(WIDE.to_choices(a)) == a and parse(str(a)) == a
        if name == "out":
            assert a.out_block == WIDE_OUT_BLOCKS[value]


def test_wide_sampling_covers_every_output_layer():
    rng = np.random.default_rng(0)
    archs = [sample(rng, "wide") for _ in range(600)]
    assert {len(x.backbone) for x in archs} == {o + 1 for o in WIDE_OUT_BLOCKS}
    assert {x.stride for x in archs} == {8, 16}
