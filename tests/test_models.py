"""Supernets, static subnets, BN folding: shapes, single-path gradients, equality, fidelity."""
import math

import numpy as np
import pytest
import torch

from lighttrack.arch import resolve, sample, sample_backbone_path
from lighttrack.models import (
    ClassSupernet, StaticClassifier, StaticTracker, TrackSupernet, extract, fold_bn,
)
from lighttrack.models.blocks import InvertedResidual, make_divisible
from lighttrack.models.supernet import extract_classifier

torch.set_num_threads(1)


def _nparams(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _randomise_bn(net: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine params, so equality tests mean something."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


@pytest.fixture(scope="module")
def supernet() -> TrackSupernet:
    torch.manual_seed(0)
    net = TrackSupernet()
    _randomise_bn(net)
    return net.eval()


def test_released_param_counts_of_lighttrack_mobile():
    net = StaticTracker.build(resolve("lighttrack-mobile"))
    assert _nparams(net) == 1_969_397
    assert _nparams(net.backbone) == 1_252_656
    assert _nparams(net.neck.bn_z) + _nparams(net.neck.bn_x) == 384
    assert _nparams(net.neck.ca) + _nparams(net.neck.adjust) == 16_640
    assert _nparams(net.cls_head) + _nparams(net.reg_head) == 699_717


def test_block_details():
    assert make_divisible(16 * 0.25) == 8 and make_divisible(96 * 0.25) == 24 and make_divisible(144 * 0.25) == 40
    b = InvertedResidual(40, 40, 5, 6)
    assert b.has_residual and b.se.conv_reduce.out_channels == 64 and b.se.conv_reduce.bias is not None
    assert b.conv_pw.bias is None and b.conv_dw.groups == 240 and b.conv_dw.padding == (2, 2)
    assert not InvertedResidual(24, 40, 3, 4, stride=2).has_residual
    std = b.conv_pw.weight.std().item()  # N(0, sqrt(2 / fan_out)), fan_out = 240
    assert abs(std - (2 / 240) ** 0.5) < 0.1 * (2 / 240) ** 0.5


def test_shapes_and_search_size(supernet):
    a = resolve("lighttrack-mobile")
    z, x = torch.randn(2, 3, 128, 128), torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        zf = supernet.template(z, a)
        assert zf.shape == (2, 96, 8, 8)
        cls, reg = supernet.search(zf, x, a)
        assert cls.shape == (2, 1, 16, 16) and reg.shape == (2, 4, 16, 16)
        assert (reg >= 0).all()
        cls, reg = supernet.path(a).search(zf, torch.randn(1, 3, 288, 288)[:, :, :, :].expand(2, -1, -1, -1))
        assert cls.shape == (2, 1, 18, 18) and reg.shape == (2, 4, 18, 18)


def test_forward_backward_only_the_path_gets_gradients():
    torch.manual_seed(1)
    net = TrackSupernet().train()
    _randomise_bn(net)  # zero-init residual BN gammas would block the gradient into their branches
    rng = np.random.default_rng(0)
    for arch in [sample(rng) for _ in range(3)] + [resolve("smallest")]:
        net.zero_grad(set_to_none=True)
        cls, reg = net(torch.randn(2, 3, 128, 128), torch.randn(2, 3, 128, 128), arch)
        assert cls.shape == (2, 1, 8, 8) and reg.shape == (2, 4, 8, 8)
        (cls.square().mean() + (reg + 1).log().mean()).backward()
        on_path = {id(p) for p in net.path_parameters(arch)}
        for name, p in net.named_parameters():
            has_grad = p.grad is not None and bool(p.grad.abs().sum() > 0)
            assert has_grad == (id(p) in on_path), name


def test_regression_tower_is_its_own(supernet):
    """Released defect: the regression branch ran the classification tower. Not here."""
    a = resolve("lighttrack-mobile")
    mods = supernet.reg_head.path_modules(a.reg)
    assert not {id(p) for m in mods for p in m.parameters()} & {id(p) for p in supernet.cls_head.parameters()}
    z, x = torch.randn(1, 3, 128, 128), torch.randn(1, 3, 128, 128)
    net = TrackSupernet().eval()
    net.load_state_dict(supernet.state_dict())
    with torch.no_grad():
        cls0, reg0 = net(z, x, a)
        for p in net.cls_head.parameters():
            p.add_(torch.randn_like(p))
        cls1, reg1 = net(z, x, a)
        assert torch.equal(reg0, reg1) and not torch.allclose(cls0, cls1)
        for p in net.reg_head.parameters():
            p.add_(torch.randn_like(p))
        assert not torch.allclose(net(z, x, a)[1], reg1)
    # a regression loss trains the regression tower and never the classification tower
    net.train().zero_grad(set_to_none=True)
    net(z, x, a)[1].mean().backward()
    assert all(p.grad is None for p in net.cls_head.parameters())
    assert all(p.grad is not None for m in net.reg_head.path_modules(a.reg) for p in m.parameters())


def test_static_subnet_equals_supernet_path(supernet):
    rng = np.random.default_rng(1)
    archs = [resolve("smallest"), resolve("largest"), resolve("lighttrack-mobile")]
    archs += [sample(rng) for _ in range(17)]
    z, x = torch.randn(1, 3, 128, 128), torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        for a in archs:
            static = extract(supernet, a).eval()
            assert _nparams(static) < _nparams(supernet)
            zf = static.template(z)
            assert (zf - supernet.template(z, a)).abs().max() <= 1e-5
            for s, t in zip(static.search(zf, x), supernet.search(zf, x, a)):
                assert (s - t).abs().max() <= 1e-5, str(a)


def test_static_search_at_256_and_fold_bn(supernet):
    a = resolve("lighttrack-mobile")
    static = extract(supernet, a).eval()
    folded = fold_bn(static)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.backbone.modules())
    z, x = torch.randn(1, 3, 128, 128), torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        ref = static(z, x)
        sup = supernet(z, x, a)
        out = folded(z, x)
    for r, s, o in zip(ref, sup, out):
        assert (r - s).abs().max() <= 1e-5
        assert (r - o).abs().max() <= 1e-4
    assert static.training is False and any(isinstance(m, torch.nn.BatchNorm2d) for m in static.modules())


def test_extract_copies_each_layers_static_module(supernet):
    """The static modules the layers hand out are copies: a built net's names, no tensor
    shared with the supernet, and trainable even where the supernet's are frozen."""
    a = resolve("lighttrack-mobile")
    assert isinstance(supernet.backbone.blocks[0].static(a.backbone[0]), InvertedResidual)
    supernet.backbone.requires_grad_(False)
    try:
        static = extract(supernet, a)
    finally:
        supernet.backbone.requires_grad_(True)
    assert list(static.state_dict()) == list(StaticTracker.build(a).state_dict())
    shared = {t.data_ptr() for t in supernet.state_dict().values()}
    assert not shared & {t.data_ptr() for t in static.state_dict().values()}
    assert all(p.requires_grad for p in static.parameters())


def test_build_is_fresh_and_path_view_shares_weights(supernet):
    a = resolve("smallest")
    fresh = StaticTracker.build(a)
    assert all(m.running_var.eq(1).all() for m in fresh.modules() if isinstance(m, torch.nn.BatchNorm2d))
    view = supernet.path(a)
    assert view.net is supernet and view.arch == a
    z = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(view.template(z), supernet.template(z, a))


def test_class_supernet_and_backbone_transfer():
    torch.manual_seed(2)
    cnet = ClassSupernet(num_classes=10, dropout=0.2)
    _randomise_bn(cnet, seed=3)
    path = sample_backbone_path(np.random.default_rng(0))
    logits = cnet.train()(torch.randn(2, 3, 64, 64), path)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    on_path = {id(p) for p in cnet.path_parameters(path)}
    assert all((p.grad is not None) == (id(p) in on_path) for p in cnet.parameters())
    with pytest.raises(ValueError, match="18 choices"):
        cnet(torch.randn(1, 3, 64, 64), path[:14])

    track = TrackSupernet().eval()
    track.load_backbone({"module." + k: v for k, v in cnet.state_dict().items()})
    a = resolve("lighttrack-mobile")
    z = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(track.template(z, a), cnet.eval().backbone(z, a.backbone))
    state = cnet.state_dict()
    del state["backbone.blocks.3.choices.2.conv_dw.weight"]
    with pytest.raises(ValueError, match="missing"):
        track.load_backbone(state)

    static = extract_classifier(cnet.eval(), path).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (static(x) - cnet(x, path)).abs().max() <= 1e-5
    retrain = StaticClassifier(a.backbone, num_classes=10)
    assert retrain(x).shape == (2, 10)
    assert set(StaticTracker.build(a).backbone.state_dict()) == set(retrain.backbone.state_dict())


def test_bad_paths_are_errors(supernet):
    with pytest.raises(ValueError, match="choice 6"):
        supernet.backbone(torch.randn(1, 3, 64, 64), (0, 6))
    with pytest.raises(ValueError, match="15 blocks"):
        supernet.backbone(torch.randn(1, 3, 64, 64), (0,) * 15)


def test_fresh_class_supernet_starts_near_chance_with_identity_residuals():
    """Init for training from scratch: residual MBConvs start as the identity (last BN gamma 0)
    and the 10-class loss at init is ln(10), not the 3.2 of the released U(+-1/sqrt(10))."""
    torch.manual_seed(0)
    net = ClassSupernet(num_classes=10).train()
    residual = [m for m in net.modules() if isinstance(m, InvertedResidual) and m.has_residual]
    assert residual and all(m.bn3.weight.abs().sum() == 0 for m in residual)
    x = torch.randn(2, residual[0].conv_pw.in_channels, 8, 8)
    with torch.no_grad():
        assert torch.equal(residual[0](x), x)
        logits = net(torch.randn(16, 3, 64, 64), [0] * 18)
    loss = torch.nn.functional.cross_entropy(logits, torch.randint(0, 10, (16,)))
    assert abs(loss.item() - math.log(10)) < 0.05


# -- the wide output-layer space: stage-2 outputs at stride 8 with their own neck ------------
def _stride8(rng, n):
    archs = []
    while len(archs) < n:
        a = sample(rng, "wide")
        if a.stride == 8:
            archs.append(a)
    return archs


def test_wide_supernet_has_a_stride8_neck_and_paper_checkpoints_stay_as_they_were():
    paper, wide = TrackSupernet(), TrackSupernet("wide")
    assert not any(k.startswith("neck_s8.") for k in paper.state_dict())
    assert set(paper.state_dict()) < set(wide.state_dict())
    assert wide.neck_s8.ca.fc1.in_channels == 256 and wide.neck_s8.adjust.in_channels == 256
    assert list(wide.neck_s8.bn_z) == ["c40"] and list(wide.neck.bn_z) == ["c80", "c96"]
    assert TrackSupernet.for_state_dict(wide.state_dict()).space.name == "wide"
    assert TrackSupernet.for_state_dict(paper.state_dict()).space.name == "paper"
    a = _stride8(np.random.default_rng(0), 1)[0]
    with pytest.raises(ValueError, match="not in the 'paper' space"):
        paper(torch.randn(1, 3, 128, 128), torch.randn(1, 3, 256, 256), a)


def test_stride8_paths_shapes_gradients_and_static_equality():
    torch.manual_seed(0)
    net = TrackSupernet("wide")
    _randomise_bn(net, 1)
    rng = np.random.default_rng(5)
    archs = _stride8(rng, 6) + [sample(rng, "wide") for _ in range(4)]
    z, x = torch.randn(2, 3, 128, 128), torch.randn(2, 3, 256, 256)
    a = archs[0]
    net.train()
    cls, reg = net(z, x, a)
    assert cls.shape == (2, 1, 32, 32) and reg.shape == (2, 4, 32, 32)
    (cls.mean() + reg.mean()).backward()
    used = {id(p) for p in net.path_parameters(a)}
    assert all(p.grad is not None for p in net.neck_s8.parameters())
    assert all(p.grad is None for p in net.neck.parameters())  # the stride-16 neck did not run
    assert all(p.grad is None for p in net.parameters() if id(p) not in used)
    net.eval()
    with torch.no_grad():
        for a in archs:
            static = extract(net, a).eval()
            zf = static.template(z)
            assert zf.shape[-1] == a.template_feature_size
            for s, t in zip(static.search(zf, x), net.search(zf, x, a)):
                assert s.shape[-1] == 256 // a.stride and (s - t).abs().max() <= 1e-5, str(a)
