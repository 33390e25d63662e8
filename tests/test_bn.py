"""BN recalibration re-estimates the statistics of exactly the BNs a path runs.

The true re-estimate (see lighttrack/models/bn.py) is the average over all forward calls
of the per-call batch statistics: mean of the batch means, and mean of the *unbiased*
batch variances (what PyTorch's BN computes per batch in train mode). The test captures
every BN input with forward hooks and recomputes those averages independently.
"""
from collections import defaultdict

import numpy as np
import pytest
import torch

from lighttrack.arch import resolve, sample
from lighttrack.models import TrackSupernet
from lighttrack.models.bn import recalibrate_bn

torch.set_num_threads(1)


def _batches(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    # different means per batch, so averaging per-batch statistics is actually exercised
    return [(torch.randn(2, 3, 128, 128, generator=g) + i, torch.randn(2, 3, 128, 128, generator=g) * (1 + i))
            for i in range(n)]


@pytest.mark.parametrize("arch_name", ["lighttrack-mobile", "random"])
def test_recalibrated_stats_equal_the_captured_batch_statistics(arch_name):
    torch.manual_seed(0)
    net = TrackSupernet().eval()
    arch = resolve(arch_name) if arch_name != "random" else sample(np.random.default_rng(5))
    path = net.path(arch)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:  # stale statistics, as after supernet training
        m.running_mean.fill_(3.0)
        m.running_var.fill_(7.0)
    batches = _batches(3, seed=1)

    # capture each BN's input on every call of the recalibration passes
    seen = defaultdict(list)
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen[mod].append(inp[0].detach().clone()))
             for m in bns]
    n = recalibrate_bn(lambda b: path(b[0], b[1]), batches)
    for h in hooks:
        h.remove()

    on_path = {m for mod in net.path_modules(arch) for m in mod.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert n == len(on_path) == len(seen) and set(seen) == on_path
    # template branch: the template-feature BN; search branch: the search-feature BN
    key = f"c{arch.out_channels}"
    assert len(seen[net.neck.bn_z[key]]) == 3 and len(seen[net.neck.bn_x[key]]) == 3
    assert len(seen[net.backbone.stem.bn]) == 6  # shared backbone: template and search calls
    for m, inputs in seen.items():
        mean = torch.stack([x.mean((0, 2, 3)) for x in inputs]).mean(0)
        var = torch.stack([x.var((0, 2, 3), unbiased=True) for x in inputs]).mean(0)
        torch.testing.assert_close(m.running_mean, mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(m.running_var, var, atol=1e-5, rtol=1e-5)
        assert m.momentum == 0.1 and not m.training and m.num_batches_tracked == len(inputs)
    for m in set(bns) - on_path:  # off the path: untouched
        assert m.running_mean.eq(3.0).all() and m.running_var.eq(7.0).all()
    assert not net.training and all(p.grad is None for p in net.parameters())


def test_recalibration_restores_train_mode_and_rejects_no_batches():
    net = TrackSupernet().train()
    a = resolve("smallest")
    recalibrate_bn(lambda b: net(b[0], b[1], a), _batches(1, seed=2))
    assert all(m.training and m.momentum == 0.1 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_bn(lambda b: net(b[0], b[1], a), [])
