"""Scanning class folders, splitting, and preparing crops with bad files among good ones."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_class_tree

from facecmp.config import Config
from facecmp.cropstore import prepare_crops
from facecmp.datasets import excluded_identities, scan_classes, split_indices
from facecmp.trainer import gather
from facecmp.errors import FacecmpError
from facecmp.meta import ModelMeta

META = ModelMeta.from_dict({"task": "identity", "arch": "resnet18", "activation": "relu", "input_size": 32,
                            "color": "rgb", "crop": {"method": "none"}, "mean": [0.5] * 3, "std": [0.5] * 3})


def test_scan_drops_small_classes_and_prefixes_roots(tmp_path):
    a = make_class_tree(tmp_path / "a", classes=3, per_class=4)
    (a / "lonely").mkdir()
    (a / "lonely" / "x.png").write_bytes((a / "person_00" / "000.png").read_bytes())
    (a / "person_00" / "notes.txt").write_text("ignored: not an image name")
    folder = scan_classes([a], min_images=2)
    assert folder.classes == ["person_00", "person_01", "person_02"]
    assert folder.dropped_classes == {"lonely": 1} and len(folder.paths) == 12
    b = make_class_tree(tmp_path / "b", classes=2, per_class=2)
    both = scan_classes([a, b], min_images=2)
    assert "b/person_00" in both.classes and len(both.classes) == 5


def test_empty_missing_and_single_class_roots_are_clear_errors(tmp_path):
    with pytest.raises(FacecmpError, match="does not exist"):
        scan_classes([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FacecmpError, match="no class folders with images"):
        scan_classes([tmp_path / "empty"])
    one = make_class_tree(tmp_path / "one", classes=1)
    with pytest.raises(FacecmpError, match="at least 2 classes"):
        scan_classes([one])


def test_path_lists_pack_paths_and_behave_as_a_sequence(tmp_path):
    from pathlib import Path

    from facecmp.datasets import PathList

    names = [tmp_path / f"person_{i // 50:04d}" / f"{i % 50:03d}é.jpg" for i in range(2000)]
    packed = PathList(names)
    assert len(packed) == 2000 and packed[0] == names[0] and packed[-1] == names[-1]
    assert list(packed[10:20]) == names[10:20] and list(packed[::500]) == names[::500]
    assert list(packed[5:5]) == [] and list(packed + names[:2]) == names + names[:2]
    assert list(PathList.concat([packed[:3], PathList(), packed[3:5]])) == names[:5]
    assert isinstance(packed[7], Path) and list(packed) == names
    assert packed._data.__sizeof__() + packed._ends.nbytes < 120 * len(names)  # not ~600 per Path
    with pytest.raises(IndexError):
        packed[2000]
    folder = scan_classes([make_class_tree(tmp_path / "d", classes=2, per_class=3)])
    assert isinstance(folder.paths, PathList) and folder.paths[4].name == "001.png"
    assert folder.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_splits_are_seeded_and_keep_a_training_image_per_class():
    labels = np.repeat(np.arange(10), 5)
    train, val = split_indices(labels, "image", 0.2, seed=1)
    again = split_indices(labels, "image", 0.2, seed=1)
    assert np.array_equal(train, again[0]) and len(val) == 10
    assert set(labels[train]) == set(range(10))
    train, val = split_indices(labels, "identity", 0.2, seed=1)
    assert not set(labels[train]) & set(labels[val]) and len(set(labels[val])) == 2


def test_prepare_skips_and_reports_unreadable_files(tmp_path):
    root = make_class_tree(tmp_path / "d", classes=2, per_class=3)
    (root / "person_00" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (root / "person_01" / "text.png").write_text("not a picture")
    folder = scan_classes([root])
    crops, ok, problems = prepare_crops(folder.paths, META, progress=False)
    assert crops.shape == (8, 32, 32, 3) and ok.sum() == 6 and len(problems) == 2
    assert any("corrupt.jpg" in p for p in problems)
    cached = prepare_crops(folder.paths, META, progress=False)  # second call hits the cache
    assert np.array_equal(cached[0], crops) and list(cached[2]) == problems


def test_part_of_the_validation_split_can_train_too(tmp_path):
    make_class_tree(tmp_path / "fer" / "train", classes=3, per_class=4)
    make_class_tree(tmp_path / "fer" / "validation", classes=3, per_class=4)
    cfg = Config(task="expression")
    cfg.data.layout = "splits"
    folder, train, val = gather(cfg, [tmp_path / "fer"], set())
    assert len(train) == 12 and len(val) == 12
    cfg.data.val_into_train = 0.5
    folder, train, val = gather(cfg, [tmp_path / "fer"], set())
    assert len(train) == 18 and len(val) == 6 and not set(train) & set(val)
    moved = [folder.paths[i] for i in train if "validation" in folder.paths[i].parts]
    assert len(moved) == 6 and sorted(folder.labels[train[12:]]) == [0, 0, 1, 1, 2, 2]
    assert set(folder.labels[val]) == {0, 1, 2}
    cfg.data.val_into_train = 1.0
    folder, train, val = gather(cfg, [tmp_path / "fer"], set())
    assert len(train) == 24 and len(val) == 0


def test_excluded_identities_combine_lists_and_the_chosen_folds_of_a_pairs_file(tmp_path):
    (tmp_path / "a.txt").write_text("# held out\nAnn\n\nBob\n")
    (tmp_path / "b.txt").write_text("Cid\n")
    pairs = tmp_path / "pairs.txt"  # LFW View 2 layout: 2 folds of 1 matched + 1 mismatched pair
    pairs.write_text("2\t1\nDee\t1\t2\nEve\t1\tFay\t1\nGus\t1\t2\nHal\t1\tIda\t2\n")
    assert excluded_identities([tmp_path / "a.txt", tmp_path / "b.txt"]) == {"Ann", "Bob", "Cid"}
    assert excluded_identities([], pairs, "1") == {"Dee", "Eve", "Fay"}
    assert excluded_identities([tmp_path / "b.txt"], pairs) == {"Cid", "Dee", "Eve", "Fay", "Gus", "Hal", "Ida"}
    with pytest.raises(FacecmpError, match="missing.txt"):
        excluded_identities([tmp_path / "missing.txt"])
