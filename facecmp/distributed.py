"""Training in several processes under Paddle's launcher: which rank this process is, the few
collective steps the trainer needs, and the sharding of facecmp's own batch sampler.

`python -m paddle.distributed.launch --nproc_per_node N $(which facecmp) train ...` starts N
copies of `facecmp train`; Paddle's hapi (`Model.fit`) then wraps the network in DataParallel
and shards a Dataset with DistributedBatchSampler. In one process none of this does anything.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from facecmp.errors import FacecmpError
from facecmp.runtime import import_paddle

paddle = import_paddle()

# what the launcher sets for every process; all or none of them must be there
LAUNCH_VARS = ("PADDLE_TRAINERS_NUM", "PADDLE_TRAINER_ID", "PADDLE_CURRENT_ENDPOINT", "PADDLE_TRAINER_ENDPOINTS")
SAMPLE_LOG = "FACECMP_SAMPLE_LOG"  # a folder: each rank appends the training images it loads
HOW = "start it with `python -m paddle.distributed.launch --nproc_per_node N $(which facecmp) train ...`"


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's place among the launcher's: global rank, number of processes, rank on its host."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int | None = None  # processes on this host (PADDLE_LOCAL_SIZE), when the launcher says

    @property
    def main(self) -> bool:
        """Whether this process writes the run directory (global rank 0)."""
        return self.rank == 0

    def crop_share(self) -> tuple[int, int] | None:
        """This process's share of the crop store's shards on its host, for
        cropstore.prepare_store: every nth shard from the kth, or None (the host's first
        process prepares them all) when the number of processes on the host is unknown."""
        if self.local_world:
            return self.local_rank, self.local_world
        return (0, 1) if self.local_rank == 0 else None


def ranks(environ: Mapping[str, str] | None = None) -> Ranks:
    """The ranks the launcher's variables give; one process when none is set. A half-set or
    inconsistent environment is a one-line FacecmpError."""
    env = os.environ if environ is None else environ
    present = [k for k in LAUNCH_VARS if env.get(k)]
    if not present:
        return Ranks()
    missing = [k for k in LAUNCH_VARS if k not in present]
    if missing:
        raise FacecmpError(f"Paddle's launch environment is half set ({', '.join(present)} set, "
                           f"{', '.join(missing)} not): {HOW}, or unset PADDLE_* to train in one process")
    try:
        world, rank = int(env["PADDLE_TRAINERS_NUM"]), int(env["PADDLE_TRAINER_ID"])
        local = int(env.get("PADDLE_RANK_IN_NODE") or env.get("PADDLE_LOCAL_RANK") or rank)
        local_world = int(env["PADDLE_LOCAL_SIZE"]) if env.get("PADDLE_LOCAL_SIZE") else None
    except ValueError:
        raise FacecmpError(f"PADDLE_TRAINERS_NUM, PADDLE_TRAINER_ID, PADDLE_RANK_IN_NODE and "
                           f"PADDLE_LOCAL_SIZE must be integers; {HOW}") from None
    endpoints = env["PADDLE_TRAINER_ENDPOINTS"].split(",")
    if (not 0 <= local <= rank < world or len(endpoints) != world or env["PADDLE_CURRENT_ENDPOINT"] not in endpoints
            or (local_world is not None and not local < local_world <= world)):
        raise FacecmpError(f"Paddle's launch environment does not add up (rank {rank} of {world}, "
                           f"{len(endpoints)} trainer endpoints, {local_world or '?'} on this host): {HOW}")
    return Ranks(rank, world, local, local_world)


def launched(environ: Mapping[str, str] | None = None) -> bool:
    """Whether Paddle's launcher started this process (it then chose the device too)."""
    env = os.environ if environ is None else environ
    return any(env.get(k) for k in LAUNCH_VARS)


def init() -> Ranks:
    """Check the launcher's environment and, with several processes, join Paddle's process group
    (Model.fit joins the same one later)."""
    r = ranks()
    if r.world > 1:
        paddle.distributed.init_parallel_env()
    return r


def sum_across_ranks(values: Sequence[float]) -> list[float]:
    """Each value summed over every process (the values themselves in one process)."""
    if ranks().world == 1:
        return list(values)
    t = paddle.to_tensor(list(values), dtype="float64")
    paddle.distributed.all_reduce(t)
    return t.numpy().tolist()


def average_buffers(net: paddle.nn.Layer) -> None:
    """Average the network's untrained state (batch-norm statistics) over the processes, so that
    every rank holds the model rank 0 saves (DataParallel keeps only the trained weights in step)."""
    world = ranks().world
    if world == 1:
        return
    for t in net.state_dict().values():
        if t.stop_gradient and t.dtype in (paddle.float32, paddle.float64):
            paddle.distributed.all_reduce(t)
            t.set_value(t * (1.0 / world))


def same_on_all_ranks(value: int) -> bool:
    """Whether every process holds this same integer (always, in one process)."""
    if ranks().world == 1:
        return True
    t = paddle.to_tensor([value, -value], dtype="int64")
    paddle.distributed.all_reduce(t, op=paddle.distributed.ReduceOp.MAX)
    high, neg_low = t.numpy().tolist()
    return high == value == -neg_low


class ShardedBatches(paddle.io.BatchSampler):
    """This rank's share of another batch sampler's batches: every world-th one from its rank.

    Every rank gets the same number of batches, the last round filled from the first batches,
    because DataParallel needs each rank to take every gradient step.
    """

    def __init__(self, batches: paddle.io.BatchSampler, rank: int, world: int) -> None:
        self.batches, self.rank, self.world = batches, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        all_batches = list(self.batches)
        for step in range(len(self)):
            yield all_batches[(step * self.world + self.rank) % len(all_batches)]

    def __len__(self) -> int:
        return -(-len(self.batches) // self.world)


class _LoggedSamples(paddle.io.Dataset):
    """A dataset that appends the name of each item it serves to a file, one a line."""

    def __init__(self, dataset: paddle.io.Dataset, names: Sequence, index: Sequence[int], path: Path) -> None:
        super().__init__()
        self.dataset, self.names, self.index, self.path = dataset, names, index, path

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        with open(self.path, "a") as f:  # appends of a line are atomic, so data workers may share it
            f.write(f"{self.names[self.index[i]]}\n")
        return self.dataset[i]


def log_samples(dataset: paddle.io.Dataset, names: Sequence, index: Sequence[int]) -> paddle.io.Dataset:
    """dataset itself; with $FACECMP_SAMPLE_LOG=DIR set, one that also appends the name of every
    training item it loads (item i is names[index[i]]) to DIR/rank-R.txt (how a test sees which
    shard each rank trained on)."""
    folder = os.environ.get(SAMPLE_LOG)
    if not folder:
        return dataset
    Path(folder).mkdir(parents=True, exist_ok=True)
    return _LoggedSamples(dataset, names, index, Path(folder) / f"rank-{ranks().rank}.txt")
