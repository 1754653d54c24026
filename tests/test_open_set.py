"""The figures of tools/open_set_lfw.py and tools/mask_routing.py on hand-made cases."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

from mask_routing import accuracy_at  # noqa: E402
from open_set_lfw import figures  # noqa: E402


def _row(name, enrolled, nearest, distance, threshold=0.5, model="identity", error=""):
    return {"name": name, "enrolled": enrolled, "nearest": nearest, "distance": distance,
            "threshold": threshold, "model": model, "error": error}


def test_open_set_figures():
    rows = [_row("a", True, "a", 0.1), _row("b", True, "b", 0.3), _row("c", True, "x", 0.2),
            _row("d", True, "", "", "", "", "no face found")]
    strangers = [_row(f"s{i}", False, "a", d) for i, d in enumerate([0.25, 0.4, 0.6, 0.7, 0.8,
                                                                    0.9, 0.95, 0.96, 0.97, 0.98])]
    out = figures(rows + strangers)
    assert (out["enrolled_probes"], out["strangers"], out["probes_without_face"]) == (4, 10, 1)
    assert out["rank1"] == 0.5
    # 1% of 10 strangers: none may be named, so the threshold sits just under 0.25: only a (0.1)
    assert out["dir_at_far_0.01"] == 0.25 and out["threshold_at_far_0.01"] < 0.25
    # 10%: one stranger (0.25) may be, the threshold just under 0.4: a and b
    assert out["dir_at_far_0.1"] == 0.5 and 0.3 < out["threshold_at_far_0.1"] < 0.4
    assert out["named_right_at_calibrated"] == 0.5
    assert (out["strangers_named_at_calibrated"], out["strangers_named_share_at_calibrated"]) == (2, 0.2)
    assert out["probes_by_model"] == {"": 1, "identity": 13}


def test_routing_accuracy_counts_failed_pairs_as_wrong():
    issame = np.array([True, True, False, False])
    plain = np.array([0.3, 0.7, 0.6, 0.4])  # threshold 0.5: right, wrong, right, wrong
    masked = np.array([0.9, 0.5, 0.9, 0.9])  # threshold 0.6: wrong, right, right, right
    none = np.zeros(4, bool)
    assert accuracy_at(issame, plain, masked, none, (0.5, 0.6), 0) == 0.5
    assert accuracy_at(issame, plain, masked, ~none, (0.5, 0.6), 0) == 0.75
    assert accuracy_at(issame, plain, masked, np.array([False, True, False, True]), (0.5, 0.6), 1) == \
        pytest.approx(4 / 5)
