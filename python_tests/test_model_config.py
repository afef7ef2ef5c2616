import json

import pytest

from mentor3ad_ext.models.config import (ABLATIONS, PRESETS, Mentor3ADConfig, apply_overrides,
                                         from_dict, get_preset, load_config, parse_overrides)


def test_presets_are_what_they_claim():
    cfm = get_preset("cfm")
    assert not cfm.use_mentor and cfm.maps == ("product",) and cfm.vote == "none"
    full = get_preset("mentor3ad")
    assert full.use_mentor and full.contrastive and full.vote == "soft"
    assert full.maps == ("rgb", "3d", "mentor")  # product: a candidate, not voted by default
    assert (full.proj_hidden, full.proj_dim, full.mentor_dim, full.mapper_hidden) == (512, 256, 128, 960)
    assert full.train.lr == 1e-3 and full.train.batch_size == 4
    # each ablation changes the full model in the advertised way only
    expected = {"no_contrastive": {"contrastive"}, "no_vote": {"maps", "vote"},
                "hard_vote": {"vote"}, "film": {"conditioning"}, "joint": {"schedule"},
                "mentor32": {"mentor_dim"}, "mentor256": {"mentor_dim"}}
    for name in ABLATIONS:
        diff = set(PRESETS[name].differences(full, ignore=("name", "train")))
        assert diff == expected[name], name


@pytest.mark.parametrize("name", list(PRESETS))
def test_round_trip(name, tmp_path):
    cfg = PRESETS[name]
    assert from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "c.json"
    path.write_text(cfg.to_json())
    assert load_config(str(path)) == cfg


def test_file_with_base_and_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"base": "cfm", "mapper_hidden": 128, "train": {"epochs": 7}}))
    cfg = load_config(path)
    assert not cfg.use_mentor and cfg.mapper_hidden == 128 and cfg.train.epochs == 7
    assert cfg.train.lr == 1e-3


def test_overrides():
    assert parse_overrides(["train.epochs=5", "maps=rgb,3d", "conditioning=film"]) == {
        "train": {"epochs": 5}, "maps": ["rgb", "3d"], "conditioning": "film"}
    cfg = apply_overrides(get_preset("mentor3ad"), ["train.epochs=5", "mentor_dim=64"])
    assert cfg.train.epochs == 5 and cfg.mentor_dim == 64 and cfg.train.batch_size == 4


@pytest.mark.parametrize("bad, match", [
    ({"mentor_dimm": 3}, "unknown config key"),
    ({"train": {"epoch": 3}}, "unknown train config key"),
    ({"vote": "maybe"}, "vote must be one of"),
    ({"maps": ["rgb", "depth"]}, "unknown map 'depth'"),
    ({"use_mentor": False}, "'mentor' map needs use_mentor"),
    ({"maps": ["rgb", "3d"], "vote": "none"}, "exactly one map"),
    ({"grid_size": 27}, "must divide image_size"),
    ({"mentor_dropout": 1.0}, "mentor_dropout"),
    ({"train": {"lr": 0}}, "train.lr"),
])
def test_invalid_configs(bad, match):
    with pytest.raises(ValueError, match=match):
        from_dict({"base": "mentor3ad", **bad})


def test_load_config_errors(tmp_path):
    with pytest.raises(ValueError, match="neither a preset"):
        load_config("nope")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read config JSON"):
        load_config(bad)
    assert isinstance(load_config(None), Mentor3ADConfig)
