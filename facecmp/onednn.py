"""Training convolutions through oneDNN on CPU, the rest of the network unchanged.

Paddle 3.3's dynamic graph computes CPU convolutions with im2col + GEMM, and its oneDNN
kernels serve only static programs in the old (non-PIR) program form: under PIR the
converted backward pass of a network does not run, and converting a whole ResNet crashes
in the max-pool's gradient. So each Conv2D alone becomes a small static program
(`paddle.jit.to_static`), run inside Paddle's `DygraphOldIrGuard` with `FLAGS_use_mkldnn`,
while batch norms, activations, pooling, the head and the loss stay in the dynamic graph.
The parameters, their names and the arithmetic are the same (a test compares losses and
gradients with the plain forward pass); a ResNet18 training step at 64x64, batch 64, runs
about 1.7x faster on this project's 2-core machine (tools/benchmark.py measures it).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from facecmp.runtime import import_paddle


def available() -> bool:
    """Whether this Paddle build and device can run the oneDNN convolutions."""
    paddle = import_paddle()

    return (paddle.base.core.is_compiled_with_mkldnn() and paddle.device.get_device() == "cpu"
            and hasattr(paddle.pir_utils, "DygraphOldIrGuard"))


@contextlib.contextmanager
def convolutions(net, enabled: bool = True) -> Iterator[bool]:
    """Within the block, net's Conv2D layers run through oneDNN; yields whether they do.

    On leaving, the layers are plain dynamic-graph layers again and the flags are restored.
    """
    paddle = import_paddle()

    if not (enabled and available()):
        yield False
        return
    convs = [layer for layer in net.sublayers(include_self=True) if isinstance(layer, paddle.nn.Conv2D)]
    for conv in convs:
        paddle.jit.to_static(conv, full_graph=True)
    before = paddle.get_flags(["FLAGS_use_mkldnn"])
    paddle.set_flags({"FLAGS_use_mkldnn": True})
    try:
        with paddle.pir_utils.DygraphOldIrGuard():
            yield True
    finally:
        paddle.set_flags(before)
        for conv in convs:
            conv.__dict__.pop("forward", None)
            conv._original_funcs.pop("forward", None)
