"""Phase 2 loop: the frozen backbone (weights AND BN statistics) does not change during the
frozen epochs, then trains; the heads train from the start (docs/method.md §8)."""
import torch

from lighttrack.config import load
from lighttrack.models import TrackSupernet
from lighttrack.train.config import SupernetConfig
from lighttrack.train.sampling import PathSampler
from lighttrack.train.tracking import train_supernet


def _batches(n: int, b: int = 2) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    items = []
    for _ in range(n * b):
        label = torch.zeros(8, 8)
        label[3:5, 3:5] = 1
        items.append({"template": torch.randn(3, 128, 128, generator=g),
                      "search": torch.randn(3, 128, 128, generator=g),  # 128 px search -> 8x8 maps
                      "cls_label": label, "reg_target": torch.rand(4, 8, 8, generator=g) * 40 + 1,
                      "reg_mask": label.clone()})
    return items


def _backbone(model) -> dict:
    return {k: v.clone() for k, v in model.backbone.state_dict().items()}


def test_frozen_backbone_unchanged_then_trains():
    torch.manual_seed(0)
    cfg = load(SupernetConfig, "configs/supernet_micro.yaml",
               ["epochs=2", "backbone_freeze_epochs=1", "steps_per_epoch=2", "eval.num_paths=0"])
    model = TrackSupernet()
    before = _backbone(model)
    heads_before = {k: v.clone() for k, v in model.cls_head.state_dict().items()}
    loader = torch.utils.data.DataLoader(_batches(2), batch_size=2)
    snapshots = []
    train_supernet(model, loader, cfg, lambda m, s=None: s is not None and snapshots.append(
        {k.removeprefix("backbone."): v.clone() for k, v in s["model"].items() if k.startswith("backbone.")}))
    after_frozen, after_thaw = snapshots
    assert all(torch.equal(before[k], after_frozen[k]) for k in before), "frozen backbone changed"
    assert any(not torch.equal(before[k], after_thaw[k]) for k in before if "running" not in k), \
        "backbone did not train after thawing"
    heads = model.cls_head.state_dict()
    assert any(not torch.equal(heads_before[k], heads[k]) for k in heads_before)


def test_largest_warmup_then_head_candidates_inherit():
    """Phase 2 warm-up: the largest architecture trains alone, then every smaller head
    candidate starts from a slice of it; the phase-1 backbone candidates are kept."""
    from lighttrack.arch import resolve
    torch.manual_seed(0)
    cfg = load(SupernetConfig, "configs/supernet_micro.yaml",
               ["epochs=2", "backbone_freeze_epochs=0", "steps_per_epoch=2", "eval.num_paths=0", "run.log_every=1",
                "largest_warmup_epochs=1", "init=phase1-run"])
    model = TrackSupernet()
    small_bb = model.backbone.blocks[0].choices[0].conv_pw.weight.clone()
    archs, states = [], []

    def report(metrics, state=None):
        if state is None:
            archs.append(metrics["arch"])
        else:
            states.append(state["inherited"])

    train_supernet(model, torch.utils.data.DataLoader(_batches(2), batch_size=2), cfg, report)
    assert archs[:2] == [str(resolve("largest"))] * 2 and str(resolve("largest")) not in archs[2:]
    assert states == [False, True]
    # backbone from phase 1 (init set): not overwritten by the inheritance
    assert torch.equal(model.backbone.blocks[0].choices[0].conv_pw.weight, small_bb)
    used = {(h.channels, i, k) for a in archs[2:] for h in (resolve(a).cls,) for i, k in enumerate(h.kernels)}
    ref = model.cls_head.towers["c256"]
    small = model.cls_head.towers["c128"]
    checked = 0
    for i in range(1, 8):
        if (128, i, 3) in used or (256, i, 5) in used:
            continue
        checked += 1
        mine, theirs = small.layers[i]["k3"], ref.layers[i]["k5"]
        assert torch.equal(mine.conv_pw.weight, theirs.conv_pw.weight[:128, :128])
        assert torch.equal(mine.conv_dw.weight, theirs.conv_dw.weight[:128, :, 1:4, 1:4])
        assert torch.equal(mine.bn.weight, theirs.bn.weight[:128])
        assert torch.equal(mine.bn.running_var, theirs.bn.running_var[:128])
    assert checked >= 3


def test_wide_space_trains_stride8_paths_with_their_own_labels():
    """space=wide: stride-8 paths (stage-2 outputs) run in phase 2, get labels for their
    2x finer maps from the search box, and train the stride-8 neck."""
    import numpy as np

    from lighttrack.arch import parse
    from lighttrack.data.labels import make_labels

    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(8):
        box = np.array([40.0 + i, 50.0, 30.0, 24.0], np.float32)  # in the 128-px search crop
        cls, reg, mask = make_labels(box, 128, 16)
        items.append({"template": torch.randn(3, 128, 128, generator=g), "search": torch.randn(3, 128, 128, generator=g),
                      "cls_label": torch.from_numpy(cls), "reg_target": torch.from_numpy(reg),
                      "reg_mask": torch.from_numpy(mask), "search_box": torch.from_numpy(box)})
    cfg = load(SupernetConfig, "configs/supernet_micro.yaml",
               ["epochs=1", "backbone_freeze_epochs=0", "steps_per_epoch=8", "eval.num_paths=0", "run.log_every=1",
                "largest_warmup_epochs=0", "space=wide", "run.seed=3"])  # seed 3: paths of both strides
    torch.manual_seed(0)
    model = TrackSupernet(cfg.space)
    neck8 = {k: v.clone() for k, v in model.neck_s8.state_dict().items()}
    seen = []
    metrics = train_supernet(model, torch.utils.data.DataLoader(items, batch_size=2), cfg,
                             lambda m, s=None: "arch" in m and seen.append((parse(m["arch"]), m["loss"])))
    strides = [a.stride for a, _ in seen]
    assert 8 in strides and 16 in strides, strides
    assert all(np.isfinite(loss) for _, loss in seen) and np.isfinite(metrics["train_loss"])
    after = model.neck_s8.state_dict()
    assert any(not torch.equal(neck8[k], after[k]) for k in neck8 if "running" not in k)


def test_a_stride8_eval_path_on_a_paper_supernet_is_refused_before_training():
    import pytest

    from lighttrack.train.track_eval import eval_archs
    path = "back_04502514044521042540+cls_211000022+reg_100000111_ops_13"  # Mobile's choices, stage-2 output
    cfg = load(SupernetConfig, "configs/supernet_micro.yaml", [f"eval.paths=[{path}]"])
    with pytest.raises(ValueError, match="not in the 'paper' space"):
        eval_archs(cfg)
    cfg = load(SupernetConfig, "configs/supernet_micro.yaml", [f"eval.paths=[{path}]", "space=wide"])
    assert [a.stride for a in eval_archs(cfg)] == [8]


def _run_sandwich(n: int) -> tuple[TrackSupernet, list[dict]]:
    torch.manual_seed(0)
    cfg = load(SupernetConfig, "configs/supernet_micro.yaml",
               ["epochs=1", "backbone_freeze_epochs=0", "steps_per_epoch=2", "eval.num_paths=0", "run.log_every=1",
                "largest_warmup_epochs=0", f"sandwich={n}"])
    model = TrackSupernet()
    steps: list[dict] = []
    train_supernet(model, torch.utils.data.DataLoader(_batches(2), batch_size=2), cfg,
                   lambda m, s=None: s is None and steps.append(m))
    return model, steps


def test_sandwich_trains_the_largest_beside_each_path_and_distils_its_scores():
    """sandwich: 1 — each step also backpropagates the largest architecture: its head ops
    that no drawn path runs move (they stay put under single-path sampling);
    the step reports the uniform path it would have drawn anyway, and its loss carries the
    distillation term on top of cls + reg."""
    sampler = PathSampler(0)
    drawn = [sampler.arch(0, step) for step in range(2)]
    assert sampler.arch(0, 0, 0) == drawn[0] and sampler.arch(0, 0, 1) != drawn[0]
    # cls-tower layers whose 256-channel k5 op (the largest's) no drawn path runs
    unused = [i for i in range(8) if all(a.cls.channels != 256 or a.cls.kernels[i] != 5 for a in drawn)]
    assert unused, "every layer's largest op was drawn; pick another seed"

    def weights(model):
        return [model.cls_head.towers["c256"].layers[i].k5.conv_pw.weight.detach().clone() for i in unused]

    moved = {}
    for n in (0, 1):
        torch.manual_seed(0)
        ref = weights(TrackSupernet())
        model, steps = _run_sandwich(n)
        moved[n] = any(not torch.equal(a, b) for a, b in zip(ref, weights(model)))
        assert [s["arch"] for s in steps] == [str(a) for a in drawn]
        extra = [s["loss"] - s["cls"] - s["reg"] for s in steps]
        if n:
            assert all(e > 0.05 for e in extra), extra  # BCE towards soft targets: > 0
        else:
            assert all(abs(e) < 1e-5 for e in extra), extra
    assert moved == {0: False, 1: True}


def test_score_distillation_pulls_towards_the_teacher_and_leaves_it_alone():
    from lighttrack.train.losses import score_distillation

    teacher = torch.randn(2, 1, 8, 8, requires_grad=True)
    far = torch.zeros(2, 1, 8, 8, requires_grad=True)
    assert score_distillation(teacher.detach().clone(), teacher) < score_distillation(far, teacher)
    score_distillation(far, teacher).backward()
    assert teacher.grad is None and far.grad is not None and far.grad.abs().sum() > 0
