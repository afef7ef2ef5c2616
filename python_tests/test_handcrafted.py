
import pytest
import torch

import mentor3ad_ext as m
from mentor3ad_ext.models import (FeatureExtractor, FPFHExtractor, HandcraftedRGBExtractor, masked_patch_mean,
                                  patch_coverage, srgb_to_lab)
from mentor3ad_ext.models.handcrafted import IMAGENET_MEAN, IMAGENET_STD


def organized_scene(S=64, bump=0.0, seed=0):
    """An organized cloud (3, S, S): a gently curved surface 0.4 m from the camera, a hole band,
    and optionally a Gaussian bump (height `bump`, metres) in the upper-left quarter."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-0.04, 0.04, S), torch.linspace(-0.04, 0.04, S), indexing="ij")
    z = 0.4 - 0.005 * torch.cos(40 * xx) - bump * torch.exp(-((xx + 0.02) ** 2 + (yy + 0.02) ** 2) / (2 * 0.004 ** 2))
    z = z + 2e-5 * torch.randn(S, S, generator=g)
    xyz = torch.stack([xx * z / 0.4, yy * z / 0.4, z])
    xyz[:, :, -S // 8:] = 0.0  # a band of holes on the right
    return xyz


def normalise(rgb):
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (rgb - mean) / std


def test_interface_and_batch_forms():
    xyz = organized_scene()[None]
    rgb = normalise(torch.rand(1, 3, 64, 64))
    valid = (xyz != 0).any(1)
    ex3, exr = FPFHExtractor(patch_grid=(8, 8)), HandcraftedRGBExtractor(patch_grid=(8, 8))
    assert isinstance(ex3, FeatureExtractor) and ex3.modality == "xyz" and exr.modality == "rgb"
    assert not ex3.pretrained and not exr.pretrained
    batch = {"rgb": rgb, "xyz": xyz, "valid": valid}
    f3, fr = ex3(batch), exr(batch)
    assert f3.shape == (1, ex3.out_channels, 8, 8) and fr.shape == (1, exr.out_channels, 8, 8)
    assert exr.out_channels == len(exr.CHANNELS) == 20 and ex3.out_channels == 33
    torch.testing.assert_close(ex3(xyz), f3)  # the tensor alone: validity from the zeros
    torch.testing.assert_close(exr(rgb), fr)
    assert torch.equal(ex3(batch), f3) and torch.equal(exr(batch), fr)  # deterministic
    assert torch.isfinite(f3).all() and torch.isfinite(fr).all()


def test_fpfh_extractor_pools_valid_pixels():
    xyz = organized_scene(S=64)[None]
    valid = (xyz != 0).any(1)
    ex = FPFHExtractor(patch_grid=(8, 8), max_nn=20, normals_k=10)
    got = ex(xyz)
    pix = m.fpfh_organized(xyz.permute(0, 2, 3, 1), max_nn=20, normals_k=10).permute(0, 3, 1, 2) / 200
    torch.testing.assert_close(got, masked_patch_mean(pix, valid, (8, 8)))
    cov = patch_coverage(valid, (8, 8))[0]
    assert (got[0][:, cov == 0] == 0).all() and (cov == 0).sum() == 8  # the hole band: last column
    blocks = got[0][:, cov == 1].reshape(3, 11, -1).sum(1)
    torch.testing.assert_close(blocks, torch.ones_like(blocks))  # each block of a full cell sums to 1


def test_fpfh_extractor_exposes_a_bump():
    ex = FPFHExtractor(patch_grid=(16, 16), max_nn=30, normals_k=15)
    flat = ex(organized_scene(S=96)[None])[0]
    bumped = ex(organized_scene(S=96, bump=0.002)[None])[0]
    change = (bumped - flat).norm(dim=0)  # (16, 16)
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    # The bump's centre (-0.02, -0.02) is at 1/4 of the field of view: cell (4, 4) of 16.
    near = ((yy - 3.5) ** 2 + (xx - 3.5) ** 2).sqrt() < 3
    far = ((yy - 3.5) ** 2 + (xx - 3.5) ** 2).sqrt() > 6
    assert change[near].mean() > 10 * change[far].mean()


def test_rgb_lab_conversion():
    colours = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    lab = srgb_to_lab(colours[:, :, None, None].double())[:, :, 0, 0]
    expect = torch.tensor([[100.0, 0.0, 0.0], [53.24, 80.09, 67.20], [32.30, 79.19, -107.86], [0.0, 0.0, 0.0]],
                          dtype=torch.float64)
    torch.testing.assert_close(lab, expect, atol=0.02, rtol=0)


def test_rgb_extractor_channels():
    ex = HandcraftedRGBExtractor(patch_grid=(8, 8), mean=None)
    uniform = torch.full((1, 3, 64, 64), 0.5)
    f = ex(uniform)[0]
    L = srgb_to_lab(torch.full((1, 3, 1, 1), 0.5))[0, :, 0, 0] / 100
    torch.testing.assert_close(f[:3], L[:, None, None].expand(3, 8, 8), atol=1e-4, rtol=0)
    assert f[3:].abs().max() < 1e-3  # no texture, no contrast, no edges
    # Normalised input gives the same features as [0, 1] input with mean=None.
    img = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(HandcraftedRGBExtractor(patch_grid=(8, 8))(normalise(img)), ex(img), atol=1e-4, rtol=0)
    # Vertical stripes: HOG energy in the horizontal-gradient bin (orientation 0).
    stripes = (torch.arange(64) % 8 < 4).float().expand(1, 3, 64, 64)
    hog = ex(stripes)[0, 9:17].mean((1, 2))
    assert hog.argmax() == 0 and hog[0] > 5 * hog[2:7].max()


def test_rgb_extractor_exposes_a_stain():
    g = torch.Generator().manual_seed(0)
    base = 0.55 + 0.05 * torch.rand(1, 3, 96, 96, generator=g)  # a mildly textured beige surface
    base[:, 2] -= 0.15
    stained = base.clone()
    yy, xx = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    spot = ((yy - 60) ** 2 + (xx - 30) ** 2).sqrt() < 7
    stained[:, :, spot] = torch.tensor([0.35, 0.25, 0.2])[:, None]  # a brown stain
    ex = HandcraftedRGBExtractor(patch_grid=(12, 12), mean=None)
    change = (ex(stained) - ex(base))[0].norm(dim=0)
    # The stain covers cells around (7.5, 3.75); everything else changes only through the 5x5
    # context channels.
    assert change[7, 3] > 0.2 and change[0:3, 8:12].max() == 0


@pytest.mark.parametrize("make, exc, match", [
    (lambda: FPFHExtractor()(torch.rand(1, 4, 8, 8)), ValueError, r"xyz must have shape \(B, 3, H, W\)"),
    (lambda: HandcraftedRGBExtractor()({"xyz": torch.rand(1, 3, 8, 8)}), KeyError, "no 'rgb' entry"),
    (lambda: FPFHExtractor()({"xyz": torch.rand(1, 3, 8, 8), "valid": torch.ones(1, 8, 9, dtype=torch.bool)}),
     ValueError, r"valid must have shape \(1, 8, 8\)"),
    (lambda: HandcraftedRGBExtractor()(torch.zeros(1, 3, 8, 8, dtype=torch.uint8)), TypeError, "floating-point"),
    (lambda: HandcraftedRGBExtractor(context_cells=4), ValueError, "context_cells must be odd"),
])
def test_bad_input(make, exc, match):
    with pytest.raises(exc, match=match):
        make()
