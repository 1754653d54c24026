"""Identity-grouped training batches: each batch holds a few images of each of its people.

Shuffled batches of 64 drawn from some 1,600 identities hold about one same-person pair
each, so batch-level terms (the teacher's pairwise similarities, facecmp/distill.py) learn
almost only how strangers differ. Grouping K images per identity puts about
batch_size x (K - 1) / 2 same-person pairs in every batch, the pairs verification is about.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from facecmp.runtime import import_paddle

paddle = import_paddle()


def identity_groups(labels: np.ndarray, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Every index once, in groups of up to k indices of one label; groups in random order."""
    groups = []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        groups += [idx[i:i + k] for i in range(0, len(idx), k)]
    return [groups[i] for i in rng.permutation(len(groups))]


class IdentityBatchSampler(paddle.io.BatchSampler):
    """Batches of batch_size indices, made of identity groups of up to k images each.

    Every image is seen once an epoch, as with shuffled batches; the grouping is drawn
    afresh each epoch from seed and the epoch number (so a resumed run draws as a fresh one
    would have).
    """

    def __init__(self, labels: np.ndarray, batch_size: int, k: int, seed: int = 0, epoch: int = 0) -> None:
        if k < 2 or batch_size < k:
            raise ValueError(f"need 2 <= images per identity ({k}) <= batch size ({batch_size})")
        self.labels, self.batch_size, self.k = np.asarray(labels).reshape(-1), batch_size, k
        self.seed, self.epoch = seed, epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = np.concatenate(identity_groups(self.labels, self.k, rng))
        for i in range(0, len(order), self.batch_size):
            yield order[i:i + self.batch_size].tolist()

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)
