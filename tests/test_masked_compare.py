"""Pairs with a face in a mask go to the bundled identity model's masked model (facecmp.masked)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import need_data
from PIL import Image

import facecmp
from facecmp.cli import main
from facecmp.detect import detect_faces, pick_face
from facecmp.errors import ModelError
from facecmp.images import load_rgb
from facecmp.masked import MASKED_AT, masked_model_dir, masked_pairs
from facecmp.masks import draw_mask
from facecmp.openset import gallery_threshold


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two photos of one person, a third of another, and a masked copy of the first."""
    tmp = tmp_path_factory.mktemp("masked_compare")
    a = need_data("lfw", "Aaron_Peirsol", "Aaron_Peirsol_0001.jpg")
    b = need_data("lfw", "Aaron_Peirsol", "Aaron_Peirsol_0002.jpg")
    other = need_data("lfw", "Abel_Pacheco", "Abel_Pacheco_0001.jpg")
    rgb = load_rgb(a)
    marks = pick_face(detect_faces(rgb))[0].landmarks
    masked = tmp / "masked.png"
    Image.fromarray(draw_mask(rgb, marks, np.random.default_rng(0), "n95", "dark")).save(masked)
    return {"a": a, "b": b, "other": other, "masked": masked, "tmp": tmp}


def test_the_routing_rule():
    assert masked_pairs([0.1, MASKED_AT, 0.9], [0.2, 0.0, 0.1]).tolist() == [False, True, True]
    assert masked_model_dir(facecmp.load_model().path, None) is None


def test_a_bare_pair_stays_with_the_model_a_masked_one_goes_to_its_masked_model(photos):
    fm = facecmp.load_model()
    assert fm.meta.masked_model and fm.masked is not None
    bare = facecmp.compare(photos["b"], photos["a"])
    assert not bare.masked and max(f.mask for f in bare.faces) < MASKED_AT
    assert bare.threshold == fm.meta.thresholds["cosine"]
    masked = facecmp.compare(photos["b"], photos["masked"])
    assert masked.masked and masked.faces[1].mask >= MASKED_AT > masked.faces[0].mask
    assert masked.threshold == fm.masked.meta.thresholds["cosine"]
    assert masked.same and masked.to_json()["masked_model"] is True
    assert masked.to_json()["faces"][1]["mask"] >= MASKED_AT
    stranger = facecmp.compare(photos["other"], photos["masked"])
    assert stranger.masked and not stranger.same and stranger.distance > masked.distance


def test_compare_pairs_writes_which_model_measured_each_pair(photos):
    pairs = photos["tmp"] / "pairs.csv"
    pairs.write_text(f"path_a,path_b,same\n{photos['b']},{photos['a']},1\n"
                     f"{photos['b']},{photos['masked']},1\n{photos['other']},{photos['masked']},0\n")
    out = photos["tmp"] / "out.csv"
    res = CliRunner().invoke(main, ["compare", "--pairs", str(pairs), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(out)))
    assert [r["model"] for r in rows] == ["", "masked", "masked"]
    assert float(rows[1]["mask_b"]) >= MASKED_AT > float(rows[0]["mask_b"])
    assert [r["verdict"] for r in rows] == ["same", "same", "different"]
    fm = facecmp.load_model()
    assert float(rows[0]["threshold"]) == pytest.approx(fm.meta.thresholds["cosine"])
    assert float(rows[1]["threshold"]) == pytest.approx(fm.masked.meta.thresholds["cosine"])


def test_a_masked_model_that_is_not_there_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="not a model directory"):
        masked_model_dir(tmp_path, "../nowhere")


def test_a_gallery_searches_a_masked_face_with_the_masked_model(photos):
    g = facecmp.Gallery(photos["tmp"] / "g.db", create=True)
    assert [o.status for o in facecmp.enroll(g, "Aaron_Peirsol", [photos["b"]])] == ["added"]
    assert [o.status for o in facecmp.enroll(g, "Abel_Pacheco", [photos["other"]])] == ["added"]
    fm = facecmp.load_model()
    stats = g.stats()
    assert stats["masked_model"] and stats["images_without_masked_vector"] == 0
    bare, = facecmp.identify(g, photos["a"])
    masked, = facecmp.identify(g, photos["masked"])
    # each model's open-set threshold for a gallery of two people (facecmp.openset)
    assert (bare.model, bare.name, bare.threshold) == ("identity", "Aaron_Peirsol", gallery_threshold(fm.meta, 2))
    assert (masked.model, masked.name) == ("masked", "Aaron_Peirsol")
    assert masked.threshold == gallery_threshold(fm.masked.meta, 2) and masked.face.p_masked >= MASKED_AT
    assert masked.threshold < fm.masked.meta.thresholds["cosine"]
    assert masked.to_json()["model"] == "masked"


def test_analyze_embeds_with_the_masked_model_only_the_faces_in_masks(photos):
    fm = facecmp.load_model()
    bare, = facecmp.analyze(photos["a"], fm, masked_embeddings=True)
    masked, = facecmp.analyze(photos["masked"], fm, masked_embeddings=True)
    assert bare.p_masked < MASKED_AT and bare.masked_embedding is None
    assert masked.p_masked >= MASKED_AT and masked.masked_embedding.shape == (512,)
    # without the mask head (enrolment), every face gets both embeddings
    plain, = facecmp.analyze(photos["a"], fm, attributes=False, masked_embeddings=True)
    assert plain.mask is None and plain.masked_embedding.shape == (512,)
    u, v = (x / np.linalg.norm(x) for x in (plain.masked_embedding, plain.embedding))
    cos = u @ v
    assert float(cos) < 0.999  # two different models
    assert facecmp.analyze(photos["masked"], fm)[0].masked_embedding is None  # not asked
