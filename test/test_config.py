"""Tests of the YAML config schema (protoocc_ros.config): every shipped file, overrides, rejections."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from protoocc_ros.config import (
    ConfigError, ProtoOccConfig, config_from_dict, config_to_dict, expected_num_prototypes,
    load_config, preview, resolve_config_path, upsample_factors,
)

SHIPPED = ["occ3d_base", "occ3d_small", "occ3d_tiny", "kitti_base", "kitti_small", "demo", "demo_baseline", "ablation"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_loads_and_roundtrips(name: str) -> None:
    cfg = load_config(resolve_config_path(name))
    assert cfg.name == name
    data = json.loads(json.dumps(config_to_dict(cfg)))  # checkpoints store it as JSON
    assert config_from_dict(data) == cfg


def test_paper_sizes_of_the_shipped_configs() -> None:
    small, kitti, demo = load_config("occ3d_small"), load_config("kitti_base"), load_config("demo")
    assert small.model.query_size == [50, 50, 16] and small.dataset.grid_size == [200, 200, 16]
    assert expected_num_prototypes(small) == 350 == small.model.prototypes.num_prototypes  # paper Table 6, r=4
    assert upsample_factors(small) == (4, 4, 1)
    assert kitti.dataset.cameras == ["image_2"] and kitti.dataset.num_classes == 20 and kitti.dataset.free_label == 0
    assert kitti.dataset.point_cloud_range == [0.0, -25.6, -2.0, 51.2, 25.6, 4.4]
    assert demo.model.backbone.type == "small_cnn" and len(demo.dataset.cameras) == 6
    assert demo.dataset.dataroot == "synthetic"


def test_demo_baseline_is_demo_with_the_three_flags_off() -> None:
    demo, base = config_to_dict(load_config("demo")), config_to_dict(load_config("demo_baseline"))
    assert demo["model"]["prototypes"]["enabled"] and demo["model"]["decoder"]["multi_perspective"]
    flags = [("prototypes", "enabled"), ("prototypes", "optimization"), ("decoder", "multi_perspective")]
    for section, key in flags:
        assert base["model"][section][key] is False
        base["model"][section][key] = demo["model"][section][key]
    for d in (demo, base):
        d.pop("name"), d["train"].pop("output_dir"), d["eval"].pop("output_dir")
    assert demo == base


def test_overrides_are_parsed_and_typed() -> None:
    cfg = load_config("demo", overrides=["train.lr=1e-3", "model.query_size=[25,25,4]", "train.amp=true",
                                         "model.backbone.pretrained=null", "dataset.dataroot=/data/x"])
    assert cfg.train.lr == pytest.approx(1e-3) and isinstance(cfg.train.lr, float)
    assert cfg.model.query_size == [25, 25, 4] and cfg.train.amp is True
    assert cfg.dataset.dataroot == "/data/x"


@pytest.mark.parametrize("override, key", [
    ("train.lrr=1", "train.lrr"),
    ("model.prototypes.num_prototypes=100", "model.prototypes.num_prototypes"),
    ("model.prototypes.ratio=3", "model.prototypes.num_prototypes"),
    ("model.query_size=[400,50,4]", "model.query_size"),
    ("model.query_size=[30,50,4]", "model.query_size"),
    ("train.lr=abc", "train.lr"),
    ("train.batch_size=1.5", "train.batch_size"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.amp=1", "train.amp"),
    ("train.schedule=linear", "train.schedule"),
    ("model.backbone.type=vgg", "model.backbone.type"),
    ("model.encoder.num_heads=3", "model.encoder.num_heads"),
    ("model.encoder.num_points=3", "model.encoder.num_points"),
    ("model.prototypes.feature_level=5", "model.prototypes.feature_level"),
    ("model.decoder.augmentations=[rotate]", "model.decoder.augmentations[0]"),
    ("dataset.grid_size=[100,200,16]", "dataset.grid_size"),
    ("dataset.free_label=18", "dataset.free_label"),
    ("dataset.class_names=[a,b]", "dataset.class_names"),
    ("loss.tau_cons=0", "loss.tau_cons"),
    ("loss.class_weights=[1.0]", "loss.class_weights"),
    ("model.prototypes.enabled=false", "model.prototypes.optimization"),
    ("dataset.cameras=[]", "dataset.cameras"),
    ("model.prototypes.layers=[1]", "model.prototypes.layers"),
    ("model.decoder.classifier_layers=0", "model.decoder.classifier_layers"),
])
def test_invalid_values_are_rejected_naming_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config("demo", overrides=[override])
    assert str(err.value).startswith(f"{key}:"), str(err.value)


def test_unknown_key_in_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"base": str(resolve_config_path("demo")), "model": {"decoder": {"chanels": 8}}}))
    with pytest.raises(ConfigError, match=r"^model\.decoder\.chanels: unknown key"):
        load_config(path)


def test_transpose_needs_a_square_query(tmp_path: Path) -> None:
    path = tmp_path / "rect.yaml"
    path.write_text(yaml.safe_dump({"base": str(resolve_config_path("demo")), "model": {"query_size": [50, 25, 4]}}))
    with pytest.raises(ConfigError, match=r"^model\.decoder\.augmentations\[0\]: transpose"):
        load_config(path, overrides=["model.decoder.augmentations=[dropout+transpose]"])
    assert load_config(path).model.query_size == [50, 25, 4]  # flips only: fine


def test_base_cycle_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


ALIAS_BOMB = """\
base: {base}
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
name: *c
"""


def test_alias_in_a_config_file_is_refused_at_once_naming_line_and_alias(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB.format(base=resolve_config_path("demo")))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message and len(message) < 300, message
    assert message.startswith(f"{path}: not valid YAML: line 3, column 8: alias *a refused"), message


def test_alias_in_an_override_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"override .*line 1, column \d+: alias \*x refused"):
        load_config("demo", ["name=[&x [1, 2], *x]"])


def test_python_tag_is_refused_on_one_line_naming_file_line_and_tag(tmp_path: Path) -> None:
    path = tmp_path / "tag.yaml"
    path.write_text(f"base: {resolve_config_path('demo')}\nname: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message, message
    assert message == (f"{path}: not valid YAML: line 2, column 7: could not determine a constructor for the tag "
                       "'tag:yaml.org,2002:python/object/apply:os.system'")


def test_values_in_messages_are_short_previews(tmp_path: Path) -> None:
    long_name = "x" * 10_000
    with pytest.raises(ConfigError) as err:
        load_config("demo", [f"dataset.cameras=[[{long_name}]]"])
    assert len(str(err.value)) < 300 and "..." in str(err.value)
    nested: list = [0]
    for _ in range(40):  # a deep structure: the preview is bounded in time too
        nested = [nested] * 10
    assert len(preview(nested)) <= 80
    assert preview(int("9" * 4000)).startswith("999")  # no ValueError from int -> str limits
    path = tmp_path / "digits.yaml"
    path.write_text("name: " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"digits.yaml: not valid YAML: Exceeds the limit"):
        load_config(path)


def test_defaults_validate_and_are_the_occ3d_grid() -> None:
    cfg = config_from_dict({})
    assert isinstance(cfg, ProtoOccConfig)
    assert cfg.dataset.grid_size == [200, 200, 16] and cfg.dataset.voxel_size == pytest.approx(0.4)
    with pytest.raises(ConfigError, match=r"^model: expected a mapping"):
        config_from_dict({"model": 3})
