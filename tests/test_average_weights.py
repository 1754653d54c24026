"""tools/average_weights.py: the mean of models' weights (backbone and head), and clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import average_weights  # noqa: E402

from facecmp.modeldir import load_net, save_model  # noqa: E402


def _shifted_copy(src: Path, dst: Path, delta: float) -> None:
    net, meta = load_net(src, with_head=True)
    for layer in (net.backbone, net.head):
        layer.set_state_dict({k: v + delta for k, v in layer.state_dict().items()})
    save_model(dst, net, meta, with_head=True)


def test_the_average_is_the_mean_of_the_weights(tmp_path, tiny_mask):
    _shifted_copy(tiny_mask, tmp_path / "a", 0.5)
    _shifted_copy(tiny_mask, tmp_path / "b", -0.25)
    assert average_weights.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "avg")]) == 0
    base, _ = load_net(tiny_mask, with_head=True)
    avg, meta = load_net(tmp_path / "avg", with_head=True)
    for got, want in ((avg.backbone, base.backbone), (avg.head, base.head)):
        got, want = got.state_dict(), want.state_dict()
        for k in want:
            np.testing.assert_allclose(got[k].numpy(), want[k].numpy() + 0.125, atol=1e-5)
    assert meta.weight_average_of == [str(tmp_path / "a"), str(tmp_path / "b")]


def test_one_model_a_missing_one_or_another_task_is_a_one_line_error(tmp_path, tiny_mask, tiny_model, capsys):
    assert average_weights.main([str(tiny_mask), "--out", str(tmp_path / "x")]) == 2
    assert average_weights.main([str(tiny_mask), str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert average_weights.main([str(tiny_mask), str(tiny_model), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert not (tmp_path / "x").exists()
