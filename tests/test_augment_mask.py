"""The synthetic-mask augmentation (data.augment.mask): off costs no random draws, on masks the
lower face of an aligned crop, and the config refuses it outside [0, 1] or off aligned crops."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from facecmp.align import template_points
from facecmp.augment import augment
from facecmp.config import AugmentConfig, CropConfig, load_config
from facecmp.errors import FacecmpError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
NOSE_ROW = template_points(64)[2, 1]  # 41.0 on a 64 x 64 crop
EYE_ROW = template_points(64)[:2, 1].max()  # 29.5


def _run(cfg, n: int = 10) -> tuple[str, int]:
    """A digest of n augmentations of one crop from seed 0, and the generator's next draw."""
    img = np.random.default_rng(1).integers(0, 256, (64, 64, 1), dtype=np.uint8)
    rng = np.random.default_rng(0)
    digest = hashlib.sha256()
    for _ in range(n):
        digest.update(augment(img, cfg, rng).tobytes())
    return digest.hexdigest()[:16], int(rng.integers(2**62))


def test_mask_off_keeps_the_random_stream_of_the_existing_augmentations():
    # recorded with augment() before the mask existed: existing configs train bit-identically
    plain = AugmentConfig(hflip=True, brightness=0.2, gamma=0.3, noise=0.05, erase=0.5)
    assert _run(plain) == ("bb38d1147c116db9", 3331379269646875037)
    bundled = load_config(None, CONFIGS / "lfw-celeba_distill-similarity-singles.yaml").data.augment
    assert bundled.mask == 0 and _run(bundled)[1] == 2901249266534375713
    assert _run(load_config("expression").data.augment)[1] == 572719816900299950
    # and a config copy with mask 0 written out draws exactly the same
    assert _run(dataclasses.replace(plain, mask=0.0)) == _run(plain)


def test_mask_off_draws_nothing_when_everything_else_is_off_too():
    img = np.zeros((64, 64, 1), np.uint8)
    rng = np.random.default_rng(3)
    before = rng.bit_generator.state
    assert np.array_equal(augment(img, AugmentConfig(hflip=False, mask=0.0), rng), img)
    assert rng.bit_generator.state == before


@pytest.mark.parametrize("channels", [1, 3])
def test_mask_on_covers_the_lower_face_and_leaves_the_eyes(channels):
    only_mask = AugmentConfig(hflip=False, mask=1.0)  # every other augmentation off
    img = np.random.default_rng(2).integers(0, 256, (64, 64, channels), dtype=np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(10):
        out = augment(img, only_mask, rng)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.array_equal(out[: int(EYE_ROW) + 2], img[: int(EYE_ROW) + 2])  # eye rows untouched
        below_nose = (out[int(NOSE_ROW):] != img[int(NOSE_ROW):]).any(axis=2)
        assert below_nose.mean() > 0.4


def test_mask_probability_is_seeded_and_roughly_kept():
    half = AugmentConfig(hflip=False, mask=0.5)
    img = np.full((64, 64, 1), 128, np.uint8)
    masked = [not np.array_equal(augment(img, half, np.random.default_rng(s)), img) for s in range(60)]
    again = [not np.array_equal(augment(img, half, np.random.default_rng(s)), img) for s in range(60)]
    assert masked == again and 15 < sum(masked) < 45


@pytest.mark.parametrize("mask, words", [(-0.1, "must be a probability between 0 and 1"),
                                         (1.5, "must be a probability between 0 and 1"),
                                         ("0.5", "must be a number"), (True, "must be a number")])
def test_config_refuses_a_mask_that_is_not_a_probability(mask, words):
    align = {"crop": {"method": "align"}}
    with pytest.raises(FacecmpError, match=f"data.augment.mask {words}"):
        load_config("identity", overrides={"data": {**align, "augment": {"mask": mask}}})


@pytest.mark.parametrize("method", ["center", "box", "none"])
def test_config_refuses_a_mask_on_crops_that_are_not_aligned(method):
    with pytest.raises(FacecmpError, match="data.augment.mask needs data.crop.method 'align'"):
        load_config("identity", overrides={"data": {"crop": {"method": method}, "augment": {"mask": 0.5}}})
    assert load_config("identity", overrides={"data": {"crop": {"method": method}}}).data.augment.mask == 0


def test_masked_recipe_is_the_bundled_one_plus_the_mask():
    masked = load_config(None, CONFIGS / "lfw-celeba_masked.yaml")
    bundled = load_config(None, CONFIGS / "lfw-celeba_distill-similarity-singles.yaml")
    assert masked.data.augment.mask == 0.5 and masked.data.crop.method == "align"
    assert dataclasses.replace(masked, data=dataclasses.replace(
        masked.data, augment=dataclasses.replace(masked.data.augment, mask=0.0))) == bundled


def test_crop_dataset_masks_the_training_crops():
    from facecmp.meta import ModelMeta
    from facecmp.trainer import CropDataset

    crops = np.random.default_rng(4).integers(0, 256, (3, 64, 64, 1), dtype=np.uint8)
    labels = np.arange(3)
    meta = ModelMeta(task="identity", arch="resnet18", activation="relu", input_size=64, color="gray",
                     mean=[0.5] * 3, std=[0.5] * 3, crop=CropConfig(method="align"))

    def item(mask: float) -> np.ndarray:
        return CropDataset(crops, labels, meta, AugmentConfig(hflip=False, mask=mask), seed=0)[1][0]

    plain, masked = item(0.0), item(1.0)
    assert plain.shape == masked.shape == (3, 64, 64)
    assert np.array_equal(plain, CropDataset(crops, labels, meta)[1][0])  # mask 0: the crop itself
    assert not np.array_equal(plain, masked)
    assert np.array_equal(plain[:, : int(EYE_ROW) + 2], masked[:, : int(EYE_ROW) + 2])


def test_gray_turns_colour_crops_gray_and_draws_nothing_when_off():
    colour = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = augment(colour, AugmentConfig(hflip=False, gray=1.0), np.random.default_rng(0))
    assert out.shape == colour.shape and (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert not (colour[..., 0] == colour[..., 1]).all()
    rng = np.random.default_rng(0)
    assert (augment(colour, AugmentConfig(hflip=False, gray=0.0), rng) == colour).all()
    assert rng.integers(2**62) == np.random.default_rng(0).integers(2**62)  # no draw at gray 0
    gray = colour[..., :1]  # a one-channel crop is left as it is
    assert (augment(gray, AugmentConfig(hflip=False, gray=1.0), np.random.default_rng(0)) == gray).all()


def test_gray_must_be_a_probability(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  augment: {gray: 1.5}\n")
    with pytest.raises(FacecmpError, match="data.augment.gray must be a probability"):
        load_config("mask", bad)


def test_data_workers_draw_their_own_augmentations_each_epoch():
    # every worker holds a copy of the dataset: with one shared generator, each would draw the
    # same augmentations, and the same again in every epoch
    import paddle

    from facecmp.meta import ModelMeta
    from facecmp.trainer import CropDataset

    crop = np.random.default_rng(4).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    crops = np.repeat(crop, 8, axis=0)  # one crop eight times: any difference is augmentation
    meta = ModelMeta(task="identity", arch="resnet18", activation="relu", input_size=64, color="rgb",
                     mean=[0.5] * 3, std=[0.5] * 3, crop=CropConfig(method="align"))
    ds = CropDataset(crops, np.zeros(8, dtype=np.int64), meta, AugmentConfig(crop_area=0.6), seed=0)
    loader = paddle.io.DataLoader(ds, batch_size=1, num_workers=2, shuffle=False)
    epochs = [[b[0].numpy()[0] for b in loader] for _ in range(2)]
    first, second = epochs
    # items 0 and 1 come from different workers (one batch each, in turn)
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], second[0]) and not np.array_equal(first[1], second[1])
