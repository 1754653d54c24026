"""Training convolutions through oneDNN give the plain forward pass's losses and gradients."""

from __future__ import annotations

import numpy as np
import pytest

models = pytest.importorskip("facecmp.models")
paddle = models.paddle
from facecmp import onednn  # noqa: E402
from facecmp.config import ModelConfig  # noqa: E402


def _loss_and_grads(net, x, y) -> tuple[float, dict[str, np.ndarray]]:
    net.clear_gradients()
    loss = paddle.nn.functional.cross_entropy(net(x, y), y)
    loss.backward()
    return float(loss), {p.name: p.grad.numpy().copy() for p in net.parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ["resnet18", "attention_resnet"])
def test_onednn_convolutions_match_the_dynamic_graph(arch):
    if not onednn.available():
        pytest.skip("this Paddle build or device has no oneDNN CPU kernels")
    paddle.seed(0)
    net = models.build_net(ModelConfig(arch=arch), classes=5)
    net.train()
    x = paddle.to_tensor(np.random.default_rng(0).normal(size=(6, 3, 64, 64)).astype("float32"))
    y = paddle.to_tensor(np.array([[0], [1], [2], [3], [4], [0]], dtype=np.int64))
    loss, grads = _loss_and_grads(net, x, y)
    flags = paddle.get_flags(["FLAGS_use_mkldnn"])
    with onednn.convolutions(net) as used:
        assert used
        fast_loss, fast_grads = _loss_and_grads(net, x, y)
        net.eval()
        fast_eval = net.backbone(x).numpy()
        net.train()
    assert fast_loss == pytest.approx(loss, rel=1e-4)
    assert fast_grads.keys() == grads.keys() and len(grads) > 20
    for name, g in grads.items():  # float32 sums in another order: equal to a few parts in 10^4
        assert np.linalg.norm(fast_grads[name] - g) <= 1e-3 * (np.linalg.norm(g) + 1e-12), name
    # afterwards: plain dynamic-graph layers again, flags as they were
    assert paddle.get_flags(["FLAGS_use_mkldnn"]) == flags
    convs = [m for m in net.sublayers() if isinstance(m, paddle.nn.Conv2D)]
    assert convs and not any("forward" in m.__dict__ for m in convs)
    net.eval()
    np.testing.assert_allclose(net.backbone(x).numpy(), fast_eval, rtol=1e-3, atol=1e-4)


def test_disabled_leaves_the_network_alone():
    net = models.build_net(ModelConfig(), classes=3)
    with onednn.convolutions(net, enabled=False) as used:
        assert not used
        assert not any("forward" in m.__dict__ for m in net.sublayers())
