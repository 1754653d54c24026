"""Identity-grouped batches: every image once, whole groups of one person, a fixed draw per epoch."""

import numpy as np
import pytest

from facecmp.batches import IdentityBatchSampler, identity_groups


LABELS = np.repeat(np.arange(7), [1, 2, 3, 5, 8, 4, 10])


def test_groups_cover_every_index_once_with_one_label_each():
    groups = identity_groups(LABELS, 4, np.random.default_rng(0))
    flat = np.concatenate(groups)
    assert sorted(flat.tolist()) == list(range(len(LABELS)))
    for g in groups:
        assert 1 <= len(g) <= 4
        assert len(set(LABELS[g].tolist())) == 1


def test_batches_have_the_batch_size_and_cover_the_epoch():
    sampler = IdentityBatchSampler(LABELS, batch_size=8, k=4, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5  # 33 images
    assert [len(b) for b in batches] == [8, 8, 8, 8, 1]
    assert sorted(i for b in batches for i in b) == list(range(len(LABELS)))


def test_draw_is_fixed_by_seed_and_epoch():
    first = IdentityBatchSampler(LABELS, 8, 4, seed=3)
    epoch0, epoch1 = list(first), list(first)
    assert epoch0 != epoch1  # a fresh grouping each epoch
    resumed = IdentityBatchSampler(LABELS, 8, 4, seed=3, epoch=1)
    assert list(resumed) == epoch1
    assert list(IdentityBatchSampler(LABELS, 8, 4, seed=3)) == epoch0


@pytest.mark.parametrize("k,batch", [(1, 8), (9, 8)])
def test_bad_group_size_raises(k, batch):
    with pytest.raises(ValueError):
        IdentityBatchSampler(LABELS, batch, k)
