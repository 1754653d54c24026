"""A facecmp ResNet18 backbone (and a classifier's head) written as an ONNX graph from its
weights with the `onnx` package alone, as tools/convert_mtcnn.py does for the detector.

paddle2onnx is not needed (its releases break on some Paddle 3.x versions). The graph
follows models.Backbone.forward exactly: conv + batch norm (folded into the conv), the
model's activation, max pool, four stages of two basic blocks with residual adds, global
average pool, flatten: the embedding. A classifier adds its head and a softmax. With
`flip`, the graph also runs each image's mirror and averages (the embeddings, and the
probabilities, as facecmp.preprocess.run_batches does).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facecmp.errors import ModelError

OPSET = 13
INPUT, EMBEDDING, PROBABILITIES = "input", "embedding", "probabilities"


class _Graph:
    """Nodes and initialisers being collected, with generated value names."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0

    def const(self, name: str, array: np.ndarray) -> str:
        """Add an initialiser; returns its name."""
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        """Add a node with one output; returns the output's name."""
        from onnx import helper

        self.count += 1
        out = out or f"{op.lower()}_{self.count}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self.count}", **attrs))
        return out


def _pads(padding: Any) -> list[int]:
    """Paddle's int or [h, w] padding as ONNX [top, left, bottom, right]."""
    if isinstance(padding, int):
        return [padding] * 4
    if isinstance(padding, (list, tuple)) and len(padding) == 2 and all(isinstance(p, int) for p in padding):
        return [padding[0], padding[1], padding[0], padding[1]]
    raise ModelError(f"onnx export: unsupported convolution padding {padding!r}")


def folded(conv: Any, bn: Any) -> tuple[np.ndarray, np.ndarray]:
    """A convolution's weight and bias with the following batch norm folded in (float32)."""
    scale = bn.weight.numpy() / np.sqrt(bn._variance.numpy() + bn._epsilon)
    bias = conv.bias.numpy() if conv.bias is not None else np.zeros(len(scale), np.float32)
    weight = conv.weight.numpy() * scale[:, None, None, None]
    return weight.astype(np.float32), ((bias - bn._mean.numpy()) * scale + bn.bias.numpy()).astype(np.float32)


def _conv_bn(g: _Graph, x: str, conv: Any, bn: Any, name: str) -> str:
    if conv._groups != 1 or list(conv._dilation) != [1, 1] or conv._padding_mode != "zeros":
        raise ModelError(f"onnx export: unsupported convolution {name}")
    weight, bias = folded(conv, bn)
    return g.node("Conv", [x, g.const(f"{name}.weight", weight), g.const(f"{name}.bias", bias)],
                  kernel_shape=list(weight.shape[2:]), strides=list(conv._stride),
                  pads=_pads(conv._padding))


def _activation(g: _Graph, x: str, layer: Any, name: str) -> str:
    """ReLU, LeakyReLU (its slope) or PReLU (its learned slopes), read from the layer itself."""
    from facecmp.runtime import import_paddle

    nn = import_paddle().nn
    if isinstance(layer, nn.LeakyReLU):
        return g.node("LeakyRelu", [x], alpha=float(layer._negative_slope))
    if isinstance(layer, nn.PReLU):
        slope = layer._weight.numpy().astype(np.float32)
        slope = slope.reshape(-1, 1, 1) if slope.size > 1 else slope.reshape(1)
        return g.node("PRelu", [x, g.const(f"{name}.slope", slope)])
    if isinstance(layer, nn.ReLU):
        return g.node("Relu", [x])
    raise ModelError(f"onnx export: unsupported activation {type(layer).__name__}")


def _block(g: _Graph, x: str, block: Any, name: str) -> str:
    """A BasicBlock: conv-bn-act-conv-bn, plus the (downsampled) input, then the activation."""
    out = _conv_bn(g, x, block.conv1, block.bn1, f"{name}.conv1")
    out = _activation(g, out, block.relu, f"{name}.act1")
    out = _conv_bn(g, out, block.conv2, block.bn2, f"{name}.conv2")
    identity = x
    if block.downsample is not None:
        identity = _conv_bn(g, x, block.downsample[0], block.downsample[1], f"{name}.downsample")
    return _activation(g, g.node("Add", [out, identity]), block.relu, f"{name}.act2")


def _trunk(g: _Graph, x: str, net: Any) -> str:
    """paddle.vision ResNet18 (num_classes=0, with_pool) then flatten: N x 512."""
    x = _conv_bn(g, x, net.conv1, net.bn1, "conv1")
    x = _activation(g, x, net.relu, "act1")
    pool = net.maxpool
    if pool.ceil_mode or not all(isinstance(v, int) for v in (pool.ksize, pool.stride, pool.padding)):
        raise ModelError("onnx export: unsupported max pool")
    x = g.node("MaxPool", [x], kernel_shape=[pool.ksize] * 2, strides=[pool.stride] * 2,
               pads=[pool.padding] * 4)
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for i, block in enumerate(getattr(net, stage)):
            x = _block(g, x, block, f"{stage}.{i}")
    return g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)


def _head(g: _Graph, emb: str, head: Any) -> str:
    """A classifier head's logits: linear (x W + b) or margin (scale * cos at inference)."""
    if hasattr(head, "fc"):
        fc = head.fc
        return g.node("Gemm", [emb, g.const("head.weight", fc.weight.numpy().astype(np.float32)),
                               g.const("head.bias", fc.bias.numpy().astype(np.float32))])
    weight = head.weight.numpy().astype(np.float64)
    weight = weight / np.maximum(np.linalg.norm(weight, axis=0, keepdims=True), 1e-12)
    norm = g.node("Max", [g.node("ReduceL2", [emb], axes=[1], keepdims=1),
                          g.const("head.eps", np.array(1e-12, np.float32))])
    unit = g.node("Div", [emb, norm])
    return g.node("MatMul", [unit, g.const("head.weight", (head.scale * weight).astype(np.float32))])


def _mean_of_halves(g: _Graph, x: str, width: int, out: str) -> str:
    """Rows [0, N) and [N, 2N) of a 2N x width tensor averaged: N x width."""
    shape = g.const(f"{out}.halves", np.array([2, -1, width], np.int64))
    return g.node("ReduceMean", [g.node("Reshape", [x, shape])], out, axes=[0], keepdims=0)


def build_model(backbone: Any, head: Any | None, input_size: int, flip: bool, name: str) -> Any:
    """The onnx.ModelProto of a loaded facecmp Backbone (ResNet18) and optional head.

    Input `input`: N x 3 x S x S float32, normalised as the model's meta says. Outputs:
    `embedding` (N x 512) and, with a head, `probabilities` (N x classes, softmax).
    """
    from onnx import TensorProto, checker, helper

    if getattr(backbone, "arch", None) != "resnet18":
        raise ModelError(f"onnx export supports resnet18 backbones, not {getattr(backbone, 'arch', '?')}; "
                         "use --format paddle-inference")
    g = _Graph()
    x = INPUT
    if flip:  # the mirror along the width axis, stacked after the images
        mirror = g.node("Slice", [x, g.const("flip.starts", np.array([-1], np.int64)),
                                  g.const("flip.ends", np.array([np.iinfo(np.int64).min], np.int64)),
                                  g.const("flip.axes", np.array([3], np.int64)),
                                  g.const("flip.steps", np.array([-1], np.int64))])
        x = g.node("Concat", [x, mirror], axis=0)
    emb = _trunk(g, x, backbone.net)
    dim = int(backbone.net.layer4[-1].conv2.weight.shape[0])
    outputs = [helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, ["N", dim])]
    if head is None:
        emb = _mean_of_halves(g, emb, dim, EMBEDDING) if flip else g.node("Identity", [emb], EMBEDDING)
    else:
        probs = g.node("Softmax", [_head(g, emb, head)], None if flip else PROBABILITIES, axis=1)
        classes = int(head.fc.weight.shape[1] if hasattr(head, "fc") else head.weight.shape[1])
        if flip:
            _mean_of_halves(g, emb, dim, EMBEDDING)
            _mean_of_halves(g, probs, classes, PROBABILITIES)
        else:
            g.node("Identity", [emb], EMBEDDING)
        outputs.append(helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["N", classes]))
    inputs = [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 3, input_size, input_size])]
    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="facecmp export")
    model.ir_version = 8  # readable by onnxruntime >= 1.10 and OpenCV 4.x
    checker.check_model(model)
    return model
