"""The backbone (image -> 512-d embedding) and the heads used to train it.

The backbone alone is what inference needs for face comparison; classifier tasks
(mask, expression) also keep their head.
"""

from __future__ import annotations

import math
import warnings

from facecmp.runtime import import_paddle

paddle = import_paddle()
nn = paddle.nn
F = paddle.nn.functional

EMBEDDING_SIZE = 512

# Paddle's BatchNorm warns on every training step that it tracks global statistics
warnings.filterwarnings("ignore", message="When training, we now always track global mean")


def make_activation(name: str) -> nn.Layer:
    """relu, leaky_relu (slope 0.1, as in the mask paper) or prelu."""
    if name == "leaky_relu":
        return nn.LeakyReLU(0.1)
    if name == "prelu":
        return nn.PReLU()
    return nn.ReLU()


def _swap_activations(layer: nn.Layer, name: str) -> None:
    for child_name, child in list(layer.named_children()):
        if isinstance(child, nn.ReLU):
            setattr(layer, child_name, make_activation(name))
        else:
            _swap_activations(child, name)


class Backbone(nn.Layer):
    """ResNet18 (or the attention ResNet) without its classifier: the pooled 512-d output."""

    def __init__(self, arch: str = "resnet18", activation: str = "relu") -> None:
        super().__init__()
        self.arch = arch
        if arch == "attention_resnet":
            from facecmp.attention import AttentionResNet

            self.net = AttentionResNet(activation)
            return
        if arch != "resnet18":
            raise ValueError(f"unknown arch {arch}")
        self.net = paddle.vision.models.resnet18(num_classes=0, with_pool=True)
        if activation != "relu":
            _swap_activations(self.net, activation)

    def forward(self, x):  # noqa: D102
        return paddle.flatten(self.net(x), 1)


class LinearHead(nn.Layer):
    """A plain fully connected classifier, as in the paper."""

    def __init__(self, in_dim: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, classes)

    def forward(self, emb, label=None):  # noqa: D102
        return self.fc(emb)


class MarginHead(nn.Layer):
    """ArcFace (additive angular) or CosFace (additive cosine) margin softmax logits.

    The margin applies only in training and only when labels are given; at eval the
    head returns plain scaled cosine logits. `margin` can be ramped up by the trainer.
    """

    def __init__(self, in_dim: int, classes: int, kind: str, scale: float, margin: float) -> None:
        super().__init__()
        self.kind, self.scale, self.margin = kind, scale, margin
        self.weight = self.create_parameter([in_dim, classes],
                                            default_initializer=nn.initializer.XavierNormal())

    def forward(self, emb, label=None):  # noqa: D102
        cos = paddle.matmul(F.normalize(emb, axis=1), F.normalize(self.weight, axis=0))
        if not self.training or label is None or self.margin <= 0:
            return self.scale * cos
        onehot = F.one_hot(paddle.reshape(label, [-1]), cos.shape[1]).astype(cos.dtype)
        if self.kind == "cosface":
            target = cos - self.margin
        else:
            m = self.margin
            sin = paddle.sqrt(paddle.clip(1.0 - cos * cos, 1e-7, 1.0))
            target = cos * math.cos(m) - sin * math.sin(m)
            # past pi - m the angle would wrap; fall back to a linear penalty (as ArcFace does)
            target = paddle.where(cos > math.cos(math.pi - m), target, cos - math.sin(math.pi - m) * m)
        return self.scale * (onehot * target + (1.0 - onehot) * cos)


class FaceNet(nn.Layer):
    """Backbone + optional dropout + head; forward(images, labels) returns logits (or embeddings without a head)."""

    def __init__(self, backbone: Backbone, head: nn.Layer | None, dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.head = head

    def forward(self, x, label=None):  # noqa: D102
        emb = self.backbone(x)
        if self.dropout is not None:
            emb = self.dropout(emb)
        return emb if self.head is None else self.head(emb, label)


def build_head(kind: str, classes: int, scale: float = 32.0, margin: float = 0.3) -> nn.Layer:
    """linear, arcface or cosface head over the 512-d embedding."""
    if kind == "linear":
        return LinearHead(EMBEDDING_SIZE, classes)
    return MarginHead(EMBEDDING_SIZE, classes, kind, scale, margin)


def build_net(model_cfg, classes: int) -> FaceNet:
    """The trainable network described by a ModelConfig."""
    backbone = Backbone(model_cfg.arch, model_cfg.activation)
    head = build_head(model_cfg.head, classes, model_cfg.scale, model_cfg.margin)
    return FaceNet(backbone, head, model_cfg.dropout)
