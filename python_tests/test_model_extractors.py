import pytest
import torch

from mentor3ad_ext.models.extractors import (PointMAEExtractor, ViTExtractor, build_extractors,
                                             to_shared_grid)
from mentor3ad_ext.models.pointmae import (PointMAEEncoder, load_pointmae_state_dict,
                                           map_pointmae_keys)
from mentor3ad_ext.models.weights import WeightsError

timm = pytest.importorskip("timm")


def _small():
    return PointMAEEncoder(dim=48, depth=4, num_heads=2, fetch_idx=(1, 2, 3))


def _pretrain_ckpt(encoder: PointMAEEncoder) -> dict:
    """A checkpoint laid out like Point-MAE's public pretrain.pth (DDP-saved Point_MAE)."""
    base = {f"module.MAE_encoder.{k}": v.clone() for k, v in encoder.state_dict().items()}
    d = encoder.dim
    base["module.mask_token"] = torch.zeros(1, 1, d)
    base["module.decoder_pos_embed.0.weight"] = torch.zeros(128, 3)
    base["module.MAE_decoder.blocks.0.norm1.weight"] = torch.ones(d)
    base["module.increase_dim.0.weight"] = torch.zeros(d, d, 1)
    return {"base_model": base, "epoch": 300}


def test_pointmae_structure():
    enc = PointMAEEncoder()
    sd = enc.state_dict()
    assert sd["encoder.first_conv.0.weight"].shape == (128, 3, 1)
    assert sd["encoder.first_conv.3.weight"].shape == (256, 128, 1)
    assert sd["encoder.second_conv.0.weight"].shape == (512, 512, 1)
    assert sd["encoder.second_conv.3.weight"].shape == (384, 512, 1)
    assert sd["pos_embed.0.weight"].shape == (128, 3) and sd["pos_embed.2.weight"].shape == (384, 128)
    assert sd["blocks.blocks.11.attn.qkv.weight"].shape == (1152, 384)
    assert "blocks.blocks.0.attn.qkv.bias" not in sd  # Point-MAE: qkv without bias
    assert "blocks.blocks.12.norm1.weight" not in sd
    assert enc.out_channels == 1152


def test_pointmae_features_are_blocks_3_7_11_through_the_final_norm():
    torch.manual_seed(0)
    enc = PointMAEEncoder(dim=48, depth=12, num_heads=2).eval()
    groups = torch.randn(1, 8, 16, 3) * 0.01
    centers = torch.randn(1, 8, 3) * 0.05
    out = enc(groups, centers)
    assert out.shape == (1, 8, 3 * 48)
    x = enc.encoder(groups)
    pos = enc.pos_embed(centers)
    outs = []
    for blk in enc.blocks.blocks:
        x = blk(x + pos)
        outs.append(enc.norm(x))
    assert torch.allclose(out, torch.cat([outs[3], outs[7], outs[11]], -1), atol=1e-5)


def test_pointmae_loads_the_public_checkpoint_layout(tmp_path):
    torch.manual_seed(1)
    src = _small()
    path = tmp_path / "pretrain.pth"
    torch.save(_pretrain_ckpt(src), path)
    dst = _small()
    load_pointmae_state_dict(dst, path)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    assert "mask_token" not in map_pointmae_keys(_pretrain_ckpt(src)["base_model"])


def test_pointmae_weight_errors_name_keys_and_shapes(tmp_path):
    src = _small()
    ckpt = _pretrain_ckpt(src)
    base = ckpt["base_model"]
    del base["module.MAE_encoder.norm.weight"]
    base["module.MAE_encoder.pos_embed.2.weight"] = torch.zeros(256, 128)
    path = tmp_path / "bad.pth"
    torch.save(ckpt, path)
    with pytest.raises(WeightsError) as info:
        load_pointmae_state_dict(_small(), path)
    msg = str(info.value)
    assert "bad.pth" in msg and "missing keys: norm.weight" in msg
    assert "pos_embed.2.weight: file (256, 128) vs model (48, 128)" in msg
    # a checkpoint of the full-size encoder does not fit a smaller one, and vice versa
    torch.save(_pretrain_ckpt(src), path)
    with pytest.raises(WeightsError, match="shape mismatch"):
        load_pointmae_state_dict(PointMAEEncoder(dim=96, depth=4, num_heads=2, fetch_idx=(1, 2, 3)), path)
    with pytest.raises(WeightsError, match="weight file not found"):
        PointMAEExtractor(tmp_path / "nope.pth", encoder=_small())
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable Point-MAE checkpoint"):
        PointMAEExtractor(junk, encoder=_small())
    with pytest.raises(WeightsError, match="needs a weight file"):
        PointMAEExtractor(None)


def _cloud_batch(n_points=(900, 700), size=32, seed=0):
    """Organized clouds (B, 3, S, S) with random holes; points = valid pixels, row-major."""
    g = torch.Generator().manual_seed(seed)
    B = len(n_points)
    xyz = torch.zeros(B, 3, size, size)
    valid = torch.zeros(B, size, size, dtype=torch.bool)
    pts, lengths = [], []
    for b, n in enumerate(n_points):
        flat = torch.randperm(size * size, generator=g)[:n].sort().values
        v = torch.zeros(size * size, dtype=torch.bool)
        v[flat] = True
        valid[b] = v.view(size, size)
        yy, xx = flat // size, flat % size
        p = torch.stack([xx * 1e-3, yy * 1e-3, 0.4 + 1e-3 * torch.sin(xx * 0.3)], 1).float()
        xyz[b].view(3, -1)[:, flat] = p.T
        pts.append(p)
        lengths.append(n)
    points = torch.zeros(B, max(n_points), 3)
    for b, p in enumerate(pts):
        points[b, : len(p)] = p
    return {"points": points, "lengths": torch.tensor(lengths), "xyz": xyz, "valid": valid}


def test_pointmae_extractor_fast_matches_reference_ops():
    torch.manual_seed(0)
    batch = _cloud_batch()
    fast = PointMAEExtractor(random_init=True, num_groups=64, group_size=16, patch_grid=(8, 8),
                             encoder=_small())
    ref = PointMAEExtractor(random_init=True, num_groups=64, group_size=16, patch_grid=(8, 8),
                            ops="reference", encoder=_small())
    ref.load_state_dict(fast.state_dict())
    raw_f, raw_r = fast.extract_raw(batch), ref.extract_raw(batch)
    for a, b in zip(raw_f, raw_r):
        assert torch.equal(a["centers"], b["centers"])
        assert torch.allclose(a["features"].float(), b["features"].float(), atol=2e-3)
        assert a["features"].dtype == torch.float16 and a["centers"].dtype == torch.float32
    gf, gr = fast.raw_to_grid(raw_f, batch), ref.raw_to_grid(raw_f, batch)
    # the common interface: extractor(batch) == raw_to_grid(extract_raw(batch))
    assert torch.allclose(fast(batch), gf)
    assert gf.shape == (2, 144, 8, 8)
    assert torch.allclose(gf, gr, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="ops must be one of"):
        PointMAEExtractor(random_init=True, ops="slow")


def _tiny_vit_extractor(weights=None, random_init=False):
    return ViTExtractor(weights, random_init=random_init, model_name="vit_tiny_patch16_224")


def test_vit_weights_roundtrip_and_errors(tmp_path):
    torch.manual_seed(0)
    src = _tiny_vit_extractor(random_init=True)
    path = tmp_path / "vit.pth"
    torch.save(src.model.state_dict(), path)
    dst = _tiny_vit_extractor(path)
    assert torch.equal(dst.model.pos_embed, src.model.pos_embed)
    assert dst.out_channels == 192 and dst.patch_grid == (14, 14)
    # the original DINO checkpoint layout (teacher / module.backbone.*) and safetensors
    torch.save({"teacher": {f"module.backbone.{k}": v for k, v in src.model.state_dict().items()}},
               tmp_path / "dino.pth")
    assert torch.equal(_tiny_vit_extractor(tmp_path / "dino.pth").model.cls_token, src.model.cls_token)
    from safetensors.torch import save_file

    save_file(src.model.state_dict(), str(tmp_path / "vit.safetensors"))
    _tiny_vit_extractor(tmp_path / "vit.safetensors")
    # wrong shapes / keys
    bad = dict(src.model.state_dict())
    bad["pos_embed"] = torch.zeros(1, 10, 192)
    bad.pop("norm.bias")
    bad["extra.weight"] = torch.zeros(1)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as info:
        _tiny_vit_extractor(tmp_path / "bad.pth")
    msg = str(info.value)
    assert "missing keys: norm.bias" in msg and "unexpected keys: extra.weight" in msg
    assert "pos_embed: file (1, 10, 192) vs model (1, 197, 192)" in msg


def test_dino_vit_b8_grid_and_random_init_messages():
    logs = []
    ext, xyz = build_extractors(random_init=True, log=logs.append)
    assert isinstance(ext, ViTExtractor) and isinstance(xyz, PointMAEExtractor)
    assert xyz.out_channels == 1152 and xyz.num_groups == 1024 and xyz.group_size == 128
    assert sum("RANDOM" in m for m in logs) == 2
    assert ext.name == "vit_base_patch8_224.dino"
    assert ext.out_channels == 768 and ext.patch_grid == (28, 28) and ext.pretrained
    batch = {"rgb": torch.randn(1, 3, 224, 224)}
    raw = ext.extract_raw(batch)
    assert raw[0]["tokens"].shape == (784, 768) and raw[0]["tokens"].dtype == torch.float16
    grid = ext.raw_to_grid(raw, batch)
    assert grid.shape == (1, 768, 28, 28)
    # token (row 2, col 5) is grid cell [2, 5]: CLS dropped, row-major patches
    assert torch.equal(grid[0, :, 2, 5], raw[0]["tokens"][2 * 28 + 5].float())
    assert not any(p.requires_grad for p in ext.parameters())
    ext.train()
    assert not ext.training


def test_build_extractors_checks_ops_first():
    with pytest.raises(ValueError, match="ops must be one of"):
        build_extractors(random_init=True, ops="nope")


def test_to_shared_grid():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(to_shared_grid(x, 4), x)
    assert torch.allclose(to_shared_grid(x, 2)[0, 0], torch.tensor([[2.5, 4.5], [10.5, 12.5]]))
    assert to_shared_grid(x, 3).shape == (1, 1, 3, 3)


def test_handcrafted_fallback_and_cache_protocol():
    from mentor3ad_ext.models import FPFHExtractor, HandcraftedRGBExtractor
    from mentor3ad_ext.models.extractors import (extract_raw, extractor_identity, raw_to_grid,
                                                 ReferenceFPFHExtractor)

    logs = []
    rgb, xyz = build_extractors(log=logs.append)
    assert isinstance(rgb, HandcraftedRGBExtractor) and isinstance(xyz, FPFHExtractor)
    assert any("--rgb-weights" in m for m in logs) and any("--pointmae-weights" in m for m in logs)
    batch = _cloud_batch((300, 250), size=16)
    batch["rgb"] = torch.rand(2, 3, 16, 16)
    raws = extract_raw(xyz, batch)
    assert raws[0]["grid"].dtype == torch.float16
    assert torch.allclose(raw_to_grid(xyz, raws, batch), xyz(batch), atol=1e-3)
    ident = extractor_identity(xyz)
    assert ident["name"] == "FPFHExtractor" and ident["out_channels"] == 33
    assert ident["params"]["max_nn"] == 40
    # the reference FPFH path gives the same features (same neighbours, same definition)
    ref = ReferenceFPFHExtractor((4, 4))
    fast = FPFHExtractor((4, 4))
    small = _cloud_batch((120,), size=16)
    assert torch.allclose(ref(small), fast(small), atol=1e-4)
    assert extractor_identity(ref)["name"] == "FPFHExtractor"
    assert extractor_identity(ref)["params"]["ops"] == "reference"
