import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mentor3ad_ext.models.config import MAPS, get_preset
from mentor3ad_ext.models.heads import (Mapper, Mentor3ADHeads, VotingModule, gaussian_blur,
                                        info_nce)

from model_utils import tiny_config


def test_info_nce_matches_definition():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    t = 0.2
    an, bn = F.normalize(a, dim=1), F.normalize(b, dim=1)
    sim = an @ bn.T / t
    manual = 0.5 * (-(sim.diag() - sim.logsumexp(1)).mean() - (sim.diag() - sim.logsumexp(0)).mean())
    assert torch.allclose(info_nce(a, b, t, 100), manual, atol=1e-6)
    # aligned pairs give a lower loss than shuffled ones
    assert info_nce(a, a, t, 100) < info_nce(a, b, t, 100)


def test_info_nce_subsamples_rows():
    a = torch.randn(500, 4)
    calls = []
    orig = F.cross_entropy

    def spy(logits, target):
        calls.append(logits.shape)
        return orig(logits, target)

    F.cross_entropy = spy
    try:
        info_nce(a, a + 0.1, 0.1, 64, torch.Generator().manual_seed(0))
    finally:
        F.cross_entropy = orig
    assert calls and all(s == (64, 64) for s in calls)


def test_shapes_and_dims_of_the_full_heads():
    cfg = get_preset("mentor3ad")
    heads = Mentor3ADHeads(cfg, 768, 1152)
    mfm = heads.mfm
    # phi = LN-Linear(C, 512)-GELU-Linear(512, 256)
    assert isinstance(mfm.phi_r[0], torch.nn.LayerNorm) and mfm.phi_r[1].in_features == 768
    assert mfm.phi_r[1].out_features == 512 and mfm.phi_r[3].out_features == 256
    assert mfm.phi_x[1].in_features == 1152
    assert mfm.fuse[-1].out_features == 128
    # CFM mappers, hidden 960, conditioned on the mentor by concatenation
    g23 = heads.mgm.g_2to3.net
    assert [m.in_features for m in g23 if isinstance(m, torch.nn.Linear)] == [768 + 128, 960, 960]
    assert g23[-1].out_features == 1152
    cfm = Mentor3ADHeads(get_preset("cfm"), 768, 1152)
    assert cfm.mfm is None and cfm.mgm.g_3to2.net[0].in_features == 1152


def _rows(n=40, cr=12, cx=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, cr, generator=g), torch.randn(n, cx, generator=g)


def test_two_stage_losses_touch_only_their_module():
    heads = Mentor3ADHeads(tiny_config(), 12, 10)
    f_r, f_x = _rows()
    heads.train()
    loss = sum(heads.losses(f_r, f_x, "mfm").values())
    loss.backward()
    assert all(p.grad is not None for p in heads.mfm.parameters())
    assert all(p.grad is None for p in heads.mgm.parameters())
    heads.zero_grad(set_to_none=True)
    parts = heads.losses(f_r, f_x, "mgm")
    assert set(parts) == {"rec_3d", "rec_rgb"}
    sum(parts.values()).backward()
    assert all(p.grad is None for p in heads.mfm.parameters())
    assert any(p.grad is not None for p in heads.mgm.parameters())


@pytest.mark.parametrize("stop", [True, False])
def test_joint_stop_gradient(stop):
    heads = Mentor3ADHeads(tiny_config(stop_gradient=stop, mentor_dropout=0.0), 12, 10)
    f_r, f_x = _rows()
    parts = heads.losses(f_r, f_x, "joint")
    assert {"infonce", "mentor_rec", "rec_3d", "rec_rgb"} <= set(parts)
    (parts["rec_3d"] + parts["rec_rgb"]).backward()
    fuse_grad = heads.mfm.fuse[0].weight.grad
    if stop:
        assert fuse_grad is None
    else:
        assert fuse_grad is not None and fuse_grad.abs().sum() > 0


def test_mentor_dropout_zeroes_patches():
    torch.manual_seed(0)
    cfg = tiny_config(mentor_dropout=0.5)
    heads = Mentor3ADHeads(cfg, 12, 10)
    seen = []
    orig = heads.mgm.forward
    heads.mgm.forward = lambda f_r, f_x, m=None: (seen.append(m), orig(f_r, f_x, m))[1]
    f_r, f_x = _rows(n=400)
    heads.train()
    heads.losses(f_r, f_x, "mgm", torch.Generator().manual_seed(0))
    zero = (seen[-1].abs().sum(1) == 0).float().mean()
    assert 0.4 < zero < 0.6
    heads.eval()  # no dropout at inference
    heads.losses(f_r, f_x, "mgm")
    assert (seen[-1].abs().sum(1) == 0).float().mean() == 0


def test_film_starts_as_the_unconditioned_mapper():
    torch.manual_seed(0)
    m = Mapper(6, 4, 16, cond_dim=3, conditioning="film")
    x = torch.randn(5, 6)
    a = m(x, torch.randn(5, 3))
    b = m(x, torch.zeros(5, 3))
    assert torch.allclose(a, b)
    with pytest.raises(ValueError, match="pass cond"):
        m(x)


def test_standardization():
    heads = Mentor3ADHeads(tiny_config(), 12, 10)
    f_r, f_x = _rows(n=200)
    f_r, f_x = f_r * 5 + 3, f_x * 0.1 - 2
    heads.fit_standardization(f_r, f_x)
    s_r, s_x = heads.standardize(f_r, f_x)
    assert torch.allclose(s_r.mean(0), torch.zeros(12), atol=1e-5)
    assert torch.allclose(s_x.std(0, unbiased=False), torch.ones(10), atol=1e-4)


def test_gaussian_blur_matches_scipy():
    from scipy.ndimage import gaussian_filter

    x = torch.rand(2, 50, 60, dtype=torch.float64)
    ours = gaussian_blur(x, 4.0).numpy()
    ref = np.stack([gaussian_filter(a, 4.0, mode="mirror", truncate=4.0) for a in x.numpy()])
    assert np.allclose(ours, ref, atol=1e-6)


def test_patch_maps_and_vote():
    cfg = tiny_config(sigma=1.0, image_size=32, grid_size=8)
    heads = Mentor3ADHeads(cfg, 12, 10).eval()
    g = torch.Generator().manual_seed(0)
    grid_r, grid_x = torch.randn(3, 12, 8, 8, generator=g), torch.randn(3, 10, 8, 8, generator=g)
    fg = torch.zeros(3, 8, 8, dtype=torch.bool)
    fg[:, 2:6, 2:6] = True
    patch = heads.patch_maps(grid_r, grid_x, fg)
    assert set(patch) == {"rgb", "3d", "mentor"}
    assert all(m.shape == (3, 8, 8) and (m[~fg] == 0).all() and (m[fg] > 0).all() for m in patch.values())
    valid = torch.zeros(3, 32, 32, dtype=torch.bool)
    valid[:, 8:24, 8:24] = True
    vm = heads.vm
    with pytest.raises(RuntimeError, match="normal statistics"):
        vm(patch, valid)
    cands = vm.candidate_maps(patch, valid, ("rgb", "3d", "product", "mentor"))
    vm.fit({k: [v] for k, v in cands.items()}, [valid])
    final, score, maps = vm(patch, valid)
    # soft vote: mean of the normalised maps; score: mean of their maxima
    stack = torch.stack([maps[n] for n in cfg.maps])
    assert torch.allclose(final, stack.mean(0))
    assert torch.allclose(score, stack.flatten(2).amax(2).mean(0))
    # normalisation: normal object pixels have mean 0 and std 1 per map
    for n, m in maps.items():
        pix = m[valid].double()
        assert abs(pix.mean()) < 1e-4 and abs(pix.std(unbiased=False) - 1) < 1e-3, n
    # product map: CFM's (product of the upsampled distances, then smoothed), as its square root
    prod = vm.candidate_maps(patch, valid, ("product",))["product"]
    up = lambda k: F.interpolate(patch[k][:, None], size=(32, 32), mode="bilinear")[:, 0] * valid  # noqa: E731
    cfm = gaussian_blur(up("rgb") * up("3d"), 1.0)
    assert torch.allclose(prod, cfm.clamp_min(0).sqrt(), atol=1e-6)
    # hard vote: count of maps above their normal quantile, times the mean
    hard = vm.with_vote(cfg.replace(vote="hard"))
    hfinal, hscore, _ = hard(patch, valid)
    idx = [MAPS.index(n) for n in cfg.maps]  # thresholds are stored per candidate map
    count = (stack > vm.pixel_threshold[idx].view(-1, 1, 1, 1)).sum(0)
    assert torch.allclose(hfinal, count * stack.mean(0))
    assert count.max() >= 1 and (count == 0).any()  # some pixels exceed the normal quantile
    maxima = stack.flatten(2).amax(2)
    assert torch.allclose(hscore, (maxima > vm.image_threshold[idx].view(-1, 1)).sum(0) * maxima.mean(0))
    # a single map: the vote is that map
    single = vm.with_vote(cfg.replace(maps=("3d",), vote="none"))
    sfinal, sscore, _ = single(patch, valid)
    assert torch.allclose(sfinal, maps["3d"]) and torch.allclose(sscore, maps["3d"].flatten(1).amax(1))


def test_vote_statistics_survive_state_dict():
    cfg = tiny_config()
    vm = VotingModule(cfg)
    vm.mean.copy_(torch.arange(4.0))
    vm.fitted.fill_(True)
    vm2 = VotingModule(cfg)
    vm2.load_state_dict(vm.state_dict())
    assert bool(vm2.fitted) and torch.equal(vm2.mean, vm.mean)
    assert math.isinf(float(VotingModule(cfg).pixel_threshold[0]))


def test_initial_weights_come_from_the_config_seed_not_the_global_rng():
    # The first training of a process used to start from whatever the global RNG held, so it
    # differed from every later one; now the config's seed decides, and the caller's RNG state
    # is left alone.
    from mentor3ad_ext.models import HandcraftedRGBExtractor, FPFHExtractor
    from mentor3ad_ext.models.mentor3ad import Mentor3AD

    cfg = tiny_config()
    torch.manual_seed(123)
    a = Mentor3AD(cfg, HandcraftedRGBExtractor(), FPFHExtractor())
    after = torch.rand(3)
    torch.manual_seed(123)
    torch.rand(1000)  # a different global state
    b = Mentor3AD(cfg, HandcraftedRGBExtractor(), FPFHExtractor())
    for (k, va), vb in zip(a.heads.state_dict().items(), b.heads.state_dict().values()):
        assert torch.equal(va, vb), k
    torch.manual_seed(123)
    Mentor3AD(cfg, HandcraftedRGBExtractor(), FPFHExtractor())
    assert torch.equal(torch.rand(3), after)  # the caller's stream is unchanged
    c = Mentor3AD(cfg.replace(train={**vars(cfg.train), "seed": cfg.train.seed + 1}),
                  HandcraftedRGBExtractor(), FPFHExtractor())
    flat = lambda model: torch.cat([p.flatten() for p in model.heads.parameters()])  # noqa: E731
    assert not torch.equal(flat(c), flat(a))
