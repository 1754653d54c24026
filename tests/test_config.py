"""The config schema: task defaults, overrides, and errors for typos."""

from __future__ import annotations

import pytest

from facecmp.config import config_from_dict, load_config, save_config, read_yaml
from facecmp.errors import FacecmpError


def test_task_defaults_and_overrides(tmp_path):
    cfg = load_config("identity")
    assert cfg.data.input_size == 64 and cfg.model.arch == "resnet18"
    (tmp_path / "x.yaml").write_text("model: {activation: leaky_relu}\ntrain: {lr: 0.01}\n")
    cfg = load_config("identity", tmp_path / "x.yaml", {"train": {"epochs": 3}})
    assert (cfg.model.activation, cfg.train.lr, cfg.train.epochs) == ("leaky_relu", 0.01, 3)
    assert cfg.data.crop.method == "center"  # untouched nested defaults survive


def test_unknown_key_and_bad_choice_are_errors(tmp_path):
    (tmp_path / "typo.yaml").write_text("train: {epoch: 3}\n")
    with pytest.raises(FacecmpError, match="unknown key 'train.epoch'"):
        load_config("identity", tmp_path / "typo.yaml")
    (tmp_path / "bad.yaml").write_text("model: {activation: swish}\n")
    with pytest.raises(FacecmpError, match="model.activation must be one of"):
        load_config("identity", tmp_path / "bad.yaml")
    (tmp_path / "broken.yaml").write_text("model: [\n")
    with pytest.raises(FacecmpError, match="not valid YAML"):
        load_config("identity", tmp_path / "broken.yaml")
    with pytest.raises(FacecmpError, match="data.val_into_train must be between 0 and 1"):
        load_config("expression", overrides={"data": {"val_into_train": 1.5}})


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("identity", overrides={"model": {"head": "arcface"}})
    save_config(cfg, tmp_path / "c.yaml")
    assert config_from_dict(read_yaml(tmp_path / "c.yaml")) == cfg


@pytest.mark.parametrize("values, words", [
    ({"data": {"val_fraction": "x"}}, "data.val_fraction must be a number"),
    ({"train": {"epochs": 2.5}}, "train.epochs must be a whole number"),
    ({"train": {"onednn": 1}}, "train.onednn must be true or false"),
    ({"data": {"mean": 0.5}}, "data.mean must be a list"),
    ({"model": {"init": 3}}, "model.init must be a string"),
    ({"train": {"batch_size": True}}, "train.batch_size must be a whole number"),
])
def test_a_value_of_the_wrong_type_is_a_one_line_error(tmp_path, values, words):
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(values))
    with pytest.raises(FacecmpError, match=words):
        load_config("identity", tmp_path / "c.yaml")
    assert load_config("identity", overrides={"train": {"lr": 1}}).train.lr == 1  # an int is a number
