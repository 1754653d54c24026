"""meta.json through facecmp.meta: every key checked, legacy files read, one threshold per metric."""

from __future__ import annotations

import json

import pytest

from facecmp.errors import ModelError
from facecmp.meta import ModelMeta, read_meta, update_meta, write_meta
from facecmp.zoo import ZOO_DIR

BASE = {"task": "identity", "arch": "resnet18", "activation": "relu", "input_size": 64, "color": "gray",
        "mean": [0.5] * 3, "std": [0.5] * 3, "crop": {"method": "align", "detector": "mtcnn"}}


@pytest.mark.parametrize("task", ["identity", "mask", "expression"])
def test_bundled_models_read_and_write_back_unchanged(task, tmp_path):
    meta = read_meta(ZOO_DIR / task)
    write_meta(tmp_path, meta)
    assert (tmp_path / "meta.json").read_text() == (ZOO_DIR / task / "meta.json").read_text()
    assert read_meta(tmp_path) == meta


def test_a_legacy_threshold_moves_into_thresholds_and_is_not_written_again(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({**BASE, "metric": "cosine", "threshold": 0.4}))
    meta = read_meta(tmp_path)
    assert meta.thresholds == {"cosine": 0.4} and meta.threshold_for() == ("cosine", 0.4)
    update_meta(tmp_path, thresholds={"cosine": 0.45, "euclid": 12.0})
    saved = json.loads((tmp_path / "meta.json").read_text())
    assert "threshold" not in saved and saved["thresholds"] == {"cosine": 0.45, "euclid": 12.0}
    assert read_meta(tmp_path).threshold_for("euclid") == ("euclid", 12.0)


@pytest.mark.parametrize("change, words", [
    ({"colour": "gray"}, "unknown keys colour"),
    ({"task": "age"}, "task must be one of"),
    ({"arch": "vgg"}, "model.arch must be one of"),
    ({"crop": {"method": "squash"}}, "data.crop.method must be one of"),
    ({"crop": {"method": "align", "size": 3}}, "crop must be a mapping of"),
    ({"input_size": 0}, "input_size must be a positive whole number"),
    ({"std": [0.5, 0.5]}, "mean and std need three values"),
    ({"metric": "manhattan"}, "metric must be one of"),
    ({"thresholds": {"l1": 3}}, "thresholds are per metric"),
    ({"predict_zoom": 0.2}, "zoom must be between 0.5 and 1"),
    ({"predict_crops": 5}, "5 crops need a zoom below 1"),
    ({"classes": ["a", "b"], "num_classes": 3}, "2 classes but num_classes 3"),
])
def test_bad_values_are_one_line_model_errors(tmp_path, change, words):
    (tmp_path / "meta.json").write_text(json.dumps({**BASE, **change}))
    with pytest.raises(ModelError, match=words) as err:
        read_meta(tmp_path)
    assert "\n" not in str(err.value) and "meta.json" in str(err.value)


def test_missing_keys_malformed_json_and_missing_directories(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({k: v for k, v in BASE.items() if k != "arch"}))
    with pytest.raises(ModelError, match="missing keys arch"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="not a JSON object"):
        read_meta(tmp_path)
    with pytest.raises(ModelError, match="does not exist"):
        read_meta(tmp_path / "nowhere")


def test_threshold_for_prefers_what_is_given_and_refuses_what_is_not_calibrated():
    meta = ModelMeta.from_dict({**BASE, "metric": "cosine", "thresholds": {"cosine": 0.5}})
    assert meta.threshold_for() == ("cosine", 0.5)
    assert meta.threshold_for("euclid", 3) == ("euclid", 3.0)
    with pytest.raises(ModelError, match="no calibrated euclid threshold"):
        meta.threshold_for("euclid")


def test_the_image_convention_keeps_only_the_crop_settings_its_method_uses():
    meta = ModelMeta.from_dict({**BASE, "crop": {"method": "align", "detector": "mtcnn", "scale": 1.3}})
    assert meta.image_convention() == {"input_size": 64, "color": "gray",
                                       "crop": {"method": "align", "detector": "mtcnn"}}
    box = ModelMeta.from_dict({**BASE, "crop": {"method": "box", "scale": 0.9}})
    assert box.image_convention()["crop"] == {"method": "box", "detector": "mtcnn", "scale": 0.9}
