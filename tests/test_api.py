"""The Python API (import facecmp): the README's example as written, inputs of every kind,
errors as FacecmpError subclasses, and a model shared by threads."""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import facecmp
from facecmp.cli import main

from conftest import REPO, data_root, need_data


def _lfw(name: str, n: int) -> str:
    return str(need_data("lfw", name, f"{name}_{n:04d}.jpg"))


def test_importing_facecmp_does_not_import_paddle():
    code = "import sys, facecmp; facecmp.FacecmpError; print('paddle' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_readme_example_runs_as_written(tmp_path):
    need_data("lfw")
    text = (REPO / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert 10 <= len([line for line in example.splitlines() if line.strip()]) <= 15  # lines of code
    # the README names the data beside the repository; the tests' data root may be elsewhere
    script = example.replace("../shared/data/", f"{data_root()}/")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("True ") and "cosine" in lines[0]
    assert lines[2].startswith("(3, 512) {2: 'missing.jpg: no such file'}")
    assert lines[3].split()[0] in ("WithMask", "WithoutMask")
    assert lines[-1].startswith("error: missing.jpg: no such file")


@pytest.mark.slow
def test_compare_agrees_with_the_cli_and_takes_arrays_and_pil_images():
    a, b, c = _lfw("Abel_Pacheco", 1), _lfw("Abel_Pacheco", 4), _lfw("Aaron_Peirsol", 1)
    same, diff = facecmp.compare(a, b), facecmp.compare(a, c)
    assert same.same and not diff.same and same.distance < diff.distance
    assert same.threshold == diff.threshold and same.metric == "cosine"
    for face in same.faces:
        assert len(face.box) == 4 and len(face.landmarks) == 5
    res = CliRunner().invoke(main, ["compare", a, b])
    assert res.exit_code == 0 and res.output.startswith(f"same: cosine distance {same.distance:.4f}")
    arr = np.asarray(Image.open(a).convert("RGB"))
    pil = Image.open(b)
    again = facecmp.compare(arr, pil)
    assert again.distance == pytest.approx(same.distance, abs=1e-5)
    assert again.faces[0].source == "<image 0>" and again.faces[1].source == "<image 1>"
    forced = facecmp.compare(a, c, threshold=10.0)
    assert forced.same and forced.threshold == 10.0


@pytest.mark.slow
def test_errors_are_facecmp_errors_of_the_right_kind(tmp_path):
    a = _lfw("Abel_Pacheco", 1)
    with pytest.raises(facecmp.ImageError, match="no such file"):
        facecmp.compare(a, tmp_path / "nope.jpg")
    blank = np.full((120, 120, 3), 128, np.uint8)
    with pytest.raises(facecmp.NoFaceError):
        facecmp.compare(a, blank)
    with pytest.raises(facecmp.ImageError, match="uint8"):
        facecmp.compare(a, blank.astype(np.float32))
    with pytest.raises(facecmp.ModelError):
        facecmp.load_model(tmp_path)
    with pytest.raises(facecmp.ModelError, match="of the mask task, not of the expression task"):
        facecmp.classify([a], task="expression", model="mask")
    with pytest.raises(facecmp.ModelError):
        facecmp.classify([a], task="identity")
    assert issubclass(facecmp.NoFaceError, facecmp.FacecmpError)


@pytest.mark.slow
def test_embed_records_failures_and_goes_on(tmp_path):
    a, b = _lfw("Abel_Pacheco", 1), _lfw("Abel_Pacheco", 4)
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    emb = facecmp.embed([a, bad, np.asarray(Image.open(b).convert("RGB")), tmp_path / "none.png"],
                        normalize=True)
    assert emb.vectors.shape == (4, 512) and emb.ok.tolist() == [True, False, True, False]
    assert set(emb.errors) == {1, 3} and "not an image" in emb.errors[1]
    assert np.allclose(np.linalg.norm(emb.vectors[emb.ok], axis=1), 1, atol=1e-5)
    assert not emb.vectors[~emb.ok].any() and emb.faces[1] is None
    emb.save(tmp_path / "e.npz")
    with np.load(tmp_path / "e.npz") as z:
        assert z["paths"].tolist() == [a, "<image 2>"] and len(z["failed"]) == 2


@pytest.mark.slow
def test_classify_both_heads():
    a = _lfw("Abel_Pacheco", 1)
    masks = facecmp.classify([a, "missing.jpg"], task="mask")
    assert masks[0].label == "WithoutMask" and masks[0].error is None
    assert sum(masks[0].probabilities.values()) == pytest.approx(1)
    assert masks[1].label is None and "no such file" in masks[1].error
    expr = facecmp.classify(a, task="expression")
    assert len(expr) == 1 and expr[0].label in expr[0].probabilities


@pytest.mark.slow
def test_a_model_is_loaded_once_and_shared_by_threads():
    assert facecmp.load_model() is facecmp.load_model(None, "identity")
    assert facecmp.load_model("mask").task == "mask"
    model = facecmp.load_model()
    pairs = [(_lfw("Abel_Pacheco", 1), _lfw("Abel_Pacheco", 4)), (_lfw("Abel_Pacheco", 1), _lfw("Aaron_Peirsol", 1)),
             (_lfw("Aaron_Peirsol", 1), _lfw("Aaron_Peirsol", 2))] * 4
    alone = [facecmp.compare(a, b, model).distance for a, b in pairs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda p: facecmp.compare(p[0], p[1], model).distance, pairs))
    assert together == pytest.approx(alone, abs=1e-5)



@pytest.mark.slow
def test_threads_that_come_and_go_can_each_use_the_models():
    # a thread per call, each ended before the next: Paddle's predictors must not be shared
    # across threads (a second thread's run failed with "std::exception" when they were)
    import threading

    a, b = _lfw("Abel_Pacheco", 1), _lfw("Aaron_Peirsol", 1)
    model = facecmp.load_model()
    want = facecmp.compare(a, b, model).distance
    got: list = []
    for _ in range(4):
        t = threading.Thread(target=lambda: got.append(facecmp.compare(a, b, model).distance))
        t.start()
        t.join()
    assert got == pytest.approx([want] * 4, abs=1e-5)

def test_wrong_arguments_are_facecmp_errors_too():
    with pytest.raises(facecmp.ModelError, match="not int"):
        facecmp.load_model(7)
    with pytest.raises(facecmp.ModelError, match="unknown task"):
        facecmp.load_model(None, "age")
    from facecmp.meta import ModelMeta

    meta = ModelMeta.from_dict({"task": "identity", "arch": "resnet18", "activation": "relu", "input_size": 64,
                                "color": "gray", "mean": [0.5] * 3, "std": [0.5] * 3, "crop": {"method": "none"}})
    with pytest.raises(facecmp.FacecmpError, match="threshold must be a number"):
        meta.threshold_for("cosine", "high")
    with pytest.raises(facecmp.ModelError, match="unknown metric"):
        meta.threshold_for("manhattan", 1.0)
