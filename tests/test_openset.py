"""Open-set thresholds (facecmp.openset): the impostor table and a gallery's threshold by size."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from facecmp.errors import FacecmpError, ModelError
from facecmp.meta import ModelMeta
from facecmp.openset import gallery_threshold, impostor_table, naming_threshold


def _meta(**values) -> ModelMeta:
    return ModelMeta.from_dict({"task": "identity", "arch": "resnet18", "activation": "relu", "input_size": 64,
                                "color": "gray", "mean": [0.5] * 3, "std": [0.5] * 3,
                                "crop": {"method": "none"}, "thresholds": {"cosine": 0.5}, **values})


def _people(n_people: int, per: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, 64))
    labels = np.repeat(np.arange(n_people), per)
    return centres[labels] + noise * rng.normal(size=(len(labels), 64)), labels


def test_the_table_counts_only_different_people_and_rises_with_the_rate():
    vectors, labels = _people(40, 3, 0.3, 0)
    table = impostor_table(vectors, labels, vectors, labels)
    rates, dists = [r[0] for r in table], [r[1] for r in table]
    assert rates == sorted(rates, reverse=True) and dists == sorted(dists, reverse=True)
    # 40 x 3 photos: 120 x 117 different-person comparisons support rates down to 1e-3, not 1e-4
    assert min(rates) == pytest.approx(1e-3)
    # the same people's photos are near one another, far below any impostor level
    same = 1 - np.sum((v := vectors / np.linalg.norm(vectors, axis=1, keepdims=True))[0] * v[1])
    assert same < dists[-1]
    with pytest.raises(FacecmpError, match="no comparisons"):
        impostor_table(vectors[:3], labels[:3], vectors[:3], labels[:3])


def test_a_larger_gallery_or_a_smaller_far_gets_a_stricter_threshold():
    table = [[0.1, 0.45], [0.01, 0.35], [0.001, 0.25], [0.0001, 0.18]]
    meta = _meta(open_set={"cosine": table})
    assert gallery_threshold(meta, 1, 0.01) == pytest.approx(0.35)  # a table level, exactly
    assert gallery_threshold(meta, 10, 0.01) == pytest.approx(0.25)
    sizes = [gallery_threshold(meta, n, 0.01) for n in (1, 3, 10, 30, 100, 10_000)]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) >= 4
    assert sizes[-1] == pytest.approx(0.18)  # past the table's smallest rate: its distance
    loose = _meta(open_set={"cosine": [[0.1, 0.62], [0.01, 0.4]]})
    assert gallery_threshold(loose, 1, 0.05) == 0.5  # never above the 1:1 threshold
    assert gallery_threshold(meta, 3, 0.001) < gallery_threshold(meta, 3, 0.01)


def test_naming_threshold_prefers_the_given_one_and_falls_back_to_1to1():
    meta = _meta(open_set={"cosine": [[0.01, 0.3], [0.001, 0.2]]})
    assert naming_threshold(meta, 50, threshold=0.42) == 0.42
    assert naming_threshold(meta, 10, far=0.01) == pytest.approx(0.2)
    assert naming_threshold(dataclasses.replace(meta, open_set={}), 50) == 0.5


def test_bad_tables_and_rates_are_one_line_errors():
    with pytest.raises(ModelError, match="open_set must map"):
        _meta(open_set={"cosine": [0.1, 0.3]})
    with pytest.raises(ModelError, match="open_set must map"):
        _meta(open_set={"manhattan": [[0.1, 0.3]]})
    with pytest.raises(ModelError, match="no open-set table"):
        gallery_threshold(_meta(), 10)
    meta = _meta(open_set={"cosine": [[0.01, 0.3]]})
    for far in (0, 1, -0.1, "lots"):
        with pytest.raises(FacecmpError, match="--far must"):
            gallery_threshold(meta, 10, far)
