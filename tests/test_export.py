"""facecmp export: ONNX and Paddle inference exports give facecmp's own embeddings and class
probabilities on real face crops; bad input is a one-line error with exit code 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import need_data

from facecmp.cli import main
from facecmp.zoo import ZOO_DIR

IDENTITY, MASK = ZOO_DIR / "identity", ZOO_DIR / "mask"
TOL = 1e-4  # max abs difference on L2-normalised embeddings and on probabilities


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _crops(paths: list[Path], model_dir: Path) -> np.ndarray:
    """Each image's crop in the model's own convention (aligned by MTCNN for identity)."""
    from facecmp.errors import FacecmpError
    from facecmp.modeldir import open_model
    from facecmp.preprocess import load_faces

    faces = [f for f in load_faces(paths, open_model(model_dir)) if not isinstance(f, FacecmpError)]
    assert len(faces) >= len(paths) - 2, "too few faces found"
    return np.stack([f.pixels for f in faces])


def _lfw(n: int) -> list[Path]:
    lfw = need_data("lfw")
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[:n]
    return [sorted(p.glob("*.jpg"))[0] for p in people]


def _ort(path: Path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install '.[export]')")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _export(model: Path, fmt: str, out: Path, *extra: str):
    return CliRunner().invoke(main, ["export", "--model", str(model), "--format", fmt, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Path:
    """The bundled identity (onnx, paddle-inference) and mask (onnx) models, exported once."""
    pytest.importorskip("onnx", reason="onnx not installed (pip install '.[export]')")
    base = tmp_path_factory.mktemp("exports")
    for model, fmt in ((IDENTITY, "onnx"), (IDENTITY, "paddle-inference"), (MASK, "onnx")):
        res = _export(model, fmt, base / f"{model.name}-{fmt}")
        assert res.exit_code == 0, res.output
    return base


def test_onnx_identity_matches_embedder(exports):
    from facecmp.embedder import Embedder
    from facecmp.preprocess import to_tensor_batch

    crops = _crops(_lfw(12), IDENTITY)
    embedder = Embedder(IDENTITY)
    want = embedder.embed_crops(crops)  # facecmp's own path: paddle.inference, flip-averaged
    out = exports / "identity-onnx"
    spec = json.loads((out / "preprocessing.json").read_text())
    got = _ort(out / spec["model_file"]).run(None, {spec["input"]["name"]: to_tensor_batch(crops, embedder.meta)})[0]
    assert got.shape == want.shape == (len(crops), 512)
    assert np.abs(_unit(got) - _unit(want)).max() < TOL
    meta = embedder.meta
    assert spec["flip_in_graph"] and spec["embed_flip"] and spec["layout"] == "NCHW"
    assert (spec["input_size"], spec["color"], spec["mean"], spec["std"]) == (64, "gray", meta.mean, meta.std)
    assert spec["metric"] == meta.metric and spec["thresholds"] == meta.thresholds
    assert spec["detector"] == "mtcnn-masked" and len(spec["crop"]["template"]) == 5
    assert spec["model"]["source_weights_dtype"] == "int8" and (out / "MODEL_CARD.md").is_file()


def test_onnx_mask_matches_classifier(exports):
    from facecmp.classifier import Classifier
    from facecmp.embedder import Embedder
    from facecmp.preprocess import to_tensor_batch

    test = need_data("facemask12k", "Test")
    paths = [p for label in ("WithMask", "WithoutMask") for p in sorted((test / label).glob("*"))[:6]]
    crops = _crops(paths + _lfw(4), MASK)
    classifier = Classifier(MASK)
    out = exports / "mask-onnx"
    spec = json.loads((out / "preprocessing.json").read_text())
    emb, probs = _ort(out / "model.onnx").run(None, {"input": to_tensor_batch(crops, classifier.meta)})
    want = classifier.probabilities(crops)
    assert np.abs(probs - want).max() < TOL
    assert (probs.argmax(1) == want.argmax(1)).all() and set(want[:12].argmax(1)) == {0, 1}
    # the plain forward pass: the fast path would cache an embedding-only export in the package
    assert np.abs(_unit(emb) - _unit(Embedder(MASK, fast=False).embed_crops(crops))).max() < TOL
    assert spec["outputs"][1]["classes"] == ["WithMask", "WithoutMask"] and not spec["flip_in_graph"]


def test_paddle_inference_export_matches_embedder(exports):
    from facecmp.embedder import Embedder
    from facecmp.preprocess import to_tensor_batch
    from facecmp.runtime import import_paddle

    inference = import_paddle().inference
    out = exports / "identity-paddle-inference"
    spec = json.loads((out / "preprocessing.json").read_text())
    cfg = inference.Config(str(out / "model.json"), str(out / "model.pdiparams"))
    cfg.disable_gpu()
    cfg.disable_glog_info()
    predictor = inference.create_predictor(cfg)
    assert predictor.get_input_names() == [spec["input"]["name"]]
    assert predictor.get_output_names() == [o["name"] for o in spec["outputs"]]
    crops = _crops(_lfw(6), IDENTITY)
    embedder = Embedder(IDENTITY)
    x = to_tensor_batch(crops, embedder.meta)
    handle = predictor.get_input_handle(spec["input"]["name"])
    handle.reshape(list(x.shape))
    handle.copy_from_cpu(x)
    predictor.run()
    got = predictor.get_output_handle(spec["outputs"][0]["name"]).copy_to_cpu()
    assert np.abs(_unit(got) - _unit(embedder.embed_crops(crops))).max() < TOL


def _one_error(res, code: int, text: str) -> None:
    assert res.exit_code == code, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], res.stderr


def test_bad_input_is_one_line(tmp_path):
    _one_error(_export(tmp_path / "missing", "onnx", tmp_path / "o"), 2, "does not exist")
    (tmp_path / "plain").mkdir()
    _one_error(_export(tmp_path / "plain", "onnx", tmp_path / "o"), 2, "not a facecmp model")
    _one_error(_export(IDENTITY, "tflite", tmp_path / "o"), 2, "unknown format 'tflite'")
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("keep me")
    _one_error(_export(IDENTITY, "onnx", full), 2, "not empty; pass --force")
    _one_error(_export(IDENTITY, "onnx", full / "notes.txt"), 2, "not a directory")
    model = tmp_path / "copy"
    shutil.copytree(IDENTITY, model, ignore=shutil.ignore_patterns("inference*"))
    _one_error(_export(model, "onnx", model, "--force"), 2, "is the model directory")
    meta = json.loads((model / "meta.json").read_text())
    (model / "meta.json").write_text(json.dumps({**meta, "arch": "attention_resnet"}))
    _one_error(_export(model, "onnx", tmp_path / "o"), 2, "use --format paddle-inference")
    assert not (tmp_path / "o").exists()


def test_force_replaces_an_export_and_keeps_other_files(tmp_path, exports):
    out = tmp_path / "out"
    shutil.copytree(exports / "mask-onnx", out)
    (out / "notes.txt").write_text("keep me")
    res = _export(MASK, "paddle-inference", out, "--force", "--flip")
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["MODEL_CARD.md", "model.json", "model.pdiparams", "notes.txt", "preprocessing.json"]
    spec = json.loads((out / "preprocessing.json").read_text())
    assert spec["format"] == "paddle-inference" and spec["flip_in_graph"]


def test_onnx_prelu_and_margin_head_match_paddle(tmp_path):
    """Branches no bundled model uses: PReLU slopes, an ArcFace head's cosine logits, the flip."""
    pytest.importorskip("onnx", reason="onnx not installed (pip install '.[export]')")
    from facecmp import models
    from facecmp.classifier import softmax
    from facecmp.meta import read_meta
    from facecmp.modeldir import save_model
    from facecmp.preprocess import run_batches, to_tensor_batch
    from facecmp.runtime import import_paddle

    paddle = import_paddle()
    paddle.seed(0)
    meta = read_meta(MASK)
    meta.activation, meta.head, meta.input_size = "prelu", "arcface", 32
    net = models.FaceNet(models.Backbone("resnet18", "prelu"), models.build_head("arcface", 2), 0.0)
    slopes = [p for name, p in net.backbone.named_parameters() if name.endswith("._weight")]
    assert len(slopes) == 9  # the stem's and one per basic block (used twice in it)
    for i, p in enumerate(slopes):  # away from the 0.25 default, each its own
        p.set_value(paddle.to_tensor([0.02 * (i + 1)], "float32"))
    net.eval()
    save_model(tmp_path / "model", net, meta, with_head=True)
    res = _export(tmp_path / "model", "onnx", tmp_path / "out", "--flip")
    assert res.exit_code == 0, res.output
    crops = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    with paddle.no_grad():
        want = np.concatenate(run_batches(lambda x: softmax(net(paddle.to_tensor(x)).numpy()), crops, meta, 8, True))
    emb, probs = _ort(tmp_path / "out" / "model.onnx").run(None, {"input": to_tensor_batch(crops, meta)})
    assert np.abs(probs - want).max() < TOL and emb.shape == (5, 512)
