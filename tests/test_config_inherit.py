"""Configs that inherit: `base:` chains, their errors, and every config under configs/ resolving."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from facecmp.config import load_config, read_config_chain, read_yaml, save_config
from facecmp.errors import FacecmpError

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_two_level_chain_child_wins_mappings_merge_lists_replace(tmp_path):
    write(tmp_path / "grand.yaml", "data: {mean: [0.1, 0.2, 0.3], augment: {rotate: 5, shift: 0.1}}\n"
                                   "train: {lr: 0.01, epochs: 7}\n")
    write(tmp_path / "mid.yaml", "base: grand.yaml\ndata: {augment: {shift: 0.2}}\ntrain: {lr: 0.02}\n")
    child = write(tmp_path / "child.yaml", "base: mid.yaml\ndata: {mean: [0.4, 0.4, 0.4]}\n"
                                           "train: {epochs: 3}\n")
    cfg = load_config("identity", child, {"train": {"batch_size": 8}})
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.02 and cfg.train.batch_size == 8  # child, mid, CLI
    assert (cfg.data.augment.rotate, cfg.data.augment.shift) == (5, 0.2)  # mapping merged key by key
    assert cfg.data.augment.hflip is True  # untouched task defaults survive the chain
    assert cfg.data.mean == [0.4, 0.4, 0.4]  # list replaced, not merged
    assert load_config("identity", child, {"train": {"epochs": 9}}).train.epochs == 9  # overrides last
    assert [f.name for f, _ in read_config_chain(child)] == ["grand.yaml", "mid.yaml", "child.yaml"]


def test_base_path_is_relative_to_the_file_naming_it(tmp_path, monkeypatch):
    write(tmp_path / "shared" / "data.yaml", "data: {input_size: 32}\n")
    write(tmp_path / "shared" / "recipe.yaml", "base: data.yaml\ntrain: {lr: 0.005}\n")
    write(tmp_path / "exp" / "run.yaml", "base: ../shared/recipe.yaml\nmodel: {dropout: 0.2}\n")
    write(tmp_path / "data.yaml", "data: {input_size: 99}\n")  # beside the cwd: must not be used
    monkeypatch.chdir(tmp_path)
    cfg = load_config("identity", Path("exp/run.yaml"))
    assert (cfg.data.input_size, cfg.train.lr, cfg.model.dropout) == (32, 0.005, 0.2)


def test_cycle_missing_base_and_bad_base_are_one_line_errors(tmp_path):
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(FacecmpError, match="base cycle") as err:
        load_config("identity", tmp_path / "a.yaml")
    assert "\n" not in str(err.value) and "a.yaml" in str(err.value)
    write(tmp_path / "self.yaml", "base: self.yaml\n")
    with pytest.raises(FacecmpError, match="base cycle"):
        load_config("identity", tmp_path / "self.yaml")

    write(tmp_path / "orphan.yaml", "base: nowhere/gone.yaml\ntrain: {lr: 0.1}\n")
    with pytest.raises(FacecmpError) as err:
        load_config("identity", tmp_path / "orphan.yaml")
    message = str(err.value)
    assert "orphan.yaml" in message and "gone.yaml" in message and "does not exist" in message
    assert "\n" not in message

    for value in ("3", "[a.yaml]", "{x: 1}", "null"):
        write(tmp_path / "bad.yaml", f"base: {value}\n")
        with pytest.raises(FacecmpError, match=r"bad\.yaml: base must be a file path"):
            load_config("identity", tmp_path / "bad.yaml")


def test_unknown_key_or_wrong_task_in_a_base_is_an_error_naming_it(tmp_path):
    write(tmp_path / "base.yaml", "train: {epoch: 3}\n")
    write(tmp_path / "child.yaml", "base: base.yaml\ntrain: {lr: 0.1}\n")
    with pytest.raises(FacecmpError, match=r"base\.yaml: unknown key 'train.epoch'"):
        load_config("identity", tmp_path / "child.yaml")
    write(tmp_path / "base.yaml", "task: expression\n")
    with pytest.raises(FacecmpError, match="written for task 'expression', not 'identity'"):
        load_config("identity", tmp_path / "child.yaml")
    assert load_config("expression", tmp_path / "child.yaml").task == "expression"


def test_saved_config_has_no_base(tmp_path):
    write(tmp_path / "base.yaml", "model: {head: arcface}\n")
    child = write(tmp_path / "child.yaml", "base: base.yaml\ntrain: {lr: 0.1}\n")
    cfg = load_config("identity", child)
    assert "base" not in dataclasses.asdict(cfg)
    save_config(cfg, tmp_path / "saved.yaml")
    saved = read_yaml(tmp_path / "saved.yaml")
    assert "base" not in saved and saved["model"]["head"] == "arcface" and saved["train"]["lr"] == 0.1


def chain_task(path: Path) -> str:
    """The task a config's chain names (its `task` keys), identity if none does."""
    tasks = {values["task"] for _, values in read_config_chain(path) if "task" in values}
    assert len(tasks) <= 1, f"{path}: its chain names several tasks {tasks}"
    return tasks.pop() if tasks else "identity"


# every YAML under configs/ (base/ and archive/ too) but the ablation specs
TRAINING_CONFIGS = sorted(p for p in CONFIGS.rglob("*.yaml")
                          if "ablations" not in p.relative_to(CONFIGS).parts)


@pytest.mark.parametrize("path", TRAINING_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_under_configs_resolves(path):
    cfg = load_config(chain_task(path), path)
    assert cfg.task == chain_task(path)


def test_ablation_specs_variants_resolve():
    # configs/ablations/ holds tools/ablation.py specs (task, data, variants), not configs
    specs = sorted((CONFIGS / "ablations").glob("*.yaml"))
    assert specs
    for spec_path in specs:
        spec = yaml.safe_load(spec_path.read_text())
        for overrides in spec["variants"].values():
            load_config(spec["task"], None, overrides or {})


def test_the_task_a_config_names_is_its_default(tmp_path):
    from facecmp.config import declared_task

    (tmp_path / "base.yaml").write_text("task: expression\ndata: {input_size: 48}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\ntrain: {epochs: 3}\n")
    assert declared_task(tmp_path / "child.yaml") == "expression"
    cfg = load_config(None, tmp_path / "child.yaml")
    assert cfg.task == "expression" and cfg.train.epochs == 3
    (tmp_path / "plain.yaml").write_text("train: {epochs: 2}\n")
    assert declared_task(tmp_path / "plain.yaml") is None and load_config(None, tmp_path / "plain.yaml").task == "identity"
