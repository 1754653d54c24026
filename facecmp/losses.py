"""Classification losses for training: cross-entropy with label smoothing, and focal loss."""

from __future__ import annotations

from facecmp.config import Config
from facecmp.runtime import import_paddle

paddle = import_paddle()


class FocalLoss(paddle.nn.Layer):
    """Focal loss (Lin et al.) for imbalanced classes, with optional label smoothing."""

    def __init__(self, gamma: float = 2.0, label_smoothing: float = 0.0):
        super().__init__()
        self.gamma, self.smoothing = gamma, label_smoothing

    def forward(self, logits, label):  # noqa: D102
        logp = paddle.nn.functional.log_softmax(logits, axis=1)
        onehot = paddle.nn.functional.one_hot(paddle.reshape(label, [-1]), logits.shape[1])
        target = onehot * (1 - self.smoothing) + self.smoothing / logits.shape[1]
        weight = (1 - paddle.exp(logp)) ** self.gamma
        return paddle.mean(paddle.sum(-target * weight * logp, axis=1))


def make_loss(cfg: Config):
    """Cross-entropy (with label smoothing) or focal loss, per the config."""
    t = cfg.train
    if t.loss == "focal":
        return FocalLoss(t.focal_gamma, t.label_smoothing)
    if t.label_smoothing > 0:  # Paddle's own label smoothing rejects integer labels
        return FocalLoss(0.0, t.label_smoothing)  # gamma 0: plain cross-entropy
    return paddle.nn.CrossEntropyLoss()
