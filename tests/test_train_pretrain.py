"""Phase 1 loop: the optional warm-up on the largest path, then inheritance and uniform paths."""
import torch

from lighttrack.config import load
from lighttrack.models import ClassSupernet
from lighttrack.train.config import PretrainConfig
from lighttrack.train.pretrain import LARGEST_PATH, train_backbone_supernet

torch.set_num_threads(1)


def _loader(n_batches: int, b: int = 4) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(0)
    items = [(torch.randn(3, 32, 32, generator=g), int(i % 3)) for i in range(n_batches * b)]
    return torch.utils.data.DataLoader(items, batch_size=b)


def test_largest_warmup_then_candidates_inherit_then_uniform():
    torch.manual_seed(0)
    cfg = load(PretrainConfig, "configs/pretrain_micro.yaml",
               ["epochs=2", "steps_per_epoch=2", "largest_warmup_epochs=1", "eval_paths=0",
                "model.num_classes=3", "run.amp=off"])
    model = ClassSupernet(num_classes=3)
    snap = {k: v.clone() for k, v in model.state_dict().items()}
    paths, states = [], []

    def report(metrics, state=None):
        if state is None:
            paths.append(tuple(int(c) for c in metrics["path"].split(",")))
        else:  # the state holds live tensors: copy them as the job's checkpoint would
            states.append(state | {"model": {k: v.clone() for k, v in state["model"].items()}})

    train_backbone_supernet(model, _loader(2), None, cfg, report)
    assert paths[:2] == [LARGEST_PATH] * 2  # epoch 0: warm-up on the largest path only
    assert all(p != LARGEST_PATH for p in paths[2:]) and len(paths) == 4
    assert states[0]["inherited"] is False and states[1]["inherited"] is True
    # during the warm-up the smaller candidates were not trained: unchanged at the end of epoch 0
    small = "backbone.blocks.0.choices.0.conv_pw.weight"
    assert torch.equal(states[0]["model"][small], snap[small])
    # after it, every candidate that no uniform step touched is a slice of the trained largest one
    used = {(i, c) for p in paths[2:] for i, c in enumerate(p)}
    checked = 0
    for i, block in enumerate(model.backbone.blocks):
        if (i, 5) in used:
            continue
        ref = block.choices[5]
        for c, cand in enumerate(block.choices[:5]):
            if (i, c) in used:
                continue
            mid = cand.conv_pw.out_channels
            assert torch.equal(cand.conv_pw.weight, ref.conv_pw.weight[:mid])
            assert torch.equal(cand.conv_pwl.weight, ref.conv_pwl.weight[:, :mid])
            k, o = cand.conv_dw.kernel_size[0], (7 - cand.conv_dw.kernel_size[0]) // 2
            assert torch.equal(cand.conv_dw.weight, ref.conv_dw.weight[:mid, :, o:o + k, o:o + k])
            checked += 1
        assert not torch.equal(ref.conv_pw.weight, snap[f"backbone.blocks.{i}.choices.5.conv_pw.weight"])
    assert checked > 40
