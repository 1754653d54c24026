"""A ResNet18-sized backbone with attention, for small facial-expression crops.

Layout: a full-resolution 3x3 stem, CBAM (channel then spatial attention, Woo et al. 2018)
on the stem's features, four stages of two basic blocks each ending in coordinate
attention (Hou et al. 2021), PReLU by default, and global average pooling to 512-d, so it
plugs into models.Backbone like resnet18 does.
"""

from __future__ import annotations

from facecmp.models import EMBEDDING_SIZE, make_activation
from facecmp.runtime import import_paddle

paddle = import_paddle()

nn = paddle.nn
F = paddle.nn.functional

WIDTHS = (64, 128, 256, EMBEDDING_SIZE)
BLOCKS = (2, 2, 2, 2)


class ChannelAttention(nn.Layer):
    """CBAM channel attention: a shared MLP over average- and max-pooled channels."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.mlp = nn.Sequential(nn.Conv2D(channels, hidden, 1, bias_attr=False), nn.ReLU(),
                                 nn.Conv2D(hidden, channels, 1, bias_attr=False))

    def forward(self, x):  # noqa: D102
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        peak = self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * F.sigmoid(avg + peak)


class SpatialAttention(nn.Layer):
    """CBAM spatial attention: a 7x7 conv over the channel-wise mean and max maps."""

    def __init__(self, kernel: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2D(2, 1, kernel, padding=kernel // 2, bias_attr=False)

    def forward(self, x):  # noqa: D102
        # The channel-wise max as a gather at argmax: same values and gradients as
        # paddle.max, whose CPU backward is ~100x slower (70% of a training step here).
        peak = paddle.take_along_axis(x, paddle.argmax(x, axis=1, keepdim=True), axis=1)
        maps = paddle.concat([paddle.mean(x, axis=1, keepdim=True), peak], axis=1)
        return x * F.sigmoid(self.conv(maps))


class CBAM(nn.Layer):
    """Channel attention followed by spatial attention."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention()

    def forward(self, x):  # noqa: D102
        return self.spatial(self.channel(x))


class CoordinateAttention(nn.Layer):
    """Coordinate attention: pool along each axis separately so the gates keep position."""

    def __init__(self, channels: int, reduction: int = 32) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.squeeze = nn.Sequential(nn.Conv2D(channels, hidden, 1, bias_attr=False),
                                     nn.BatchNorm2D(hidden), nn.Hardswish())
        self.gate_h = nn.Conv2D(hidden, channels, 1)
        self.gate_w = nn.Conv2D(hidden, channels, 1)

    def forward(self, x):  # noqa: D102
        h, w = x.shape[2], x.shape[3]
        along_h = paddle.mean(x, axis=3, keepdim=True)  # N x C x H x 1
        along_w = paddle.mean(x, axis=2, keepdim=True).transpose([0, 1, 3, 2])  # N x C x W x 1
        y = self.squeeze(paddle.concat([along_h, along_w], axis=2))
        y_h, y_w = paddle.split(y, [h, w], axis=2)
        a_h = F.sigmoid(self.gate_h(y_h))
        a_w = F.sigmoid(self.gate_w(y_w.transpose([0, 1, 3, 2])))
        return x * a_h * a_w


class AttentionBlock(nn.Layer):
    """A ResNet basic block whose residual branch ends in coordinate attention."""

    def __init__(self, cin: int, cout: int, stride: int, activation: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2D(cin, cout, 3, stride=stride, padding=1, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(cout)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2D(cout, cout, 3, padding=1, bias_attr=False)
        self.bn2 = nn.BatchNorm2D(cout)
        self.attention = CoordinateAttention(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2D(cin, cout, 1, stride=stride, bias_attr=False),
                                          nn.BatchNorm2D(cout))
        self.act2 = make_activation(activation)

    def forward(self, x):  # noqa: D102
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.attention(self.bn2(self.conv2(y)))
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.act2(y + skip)


class AttentionResNet(nn.Layer):
    """CBAM stem + four stages of coordinate-attention basic blocks -> N x 512 features."""

    def __init__(self, activation: str = "prelu", in_channels: int = 3) -> None:
        super().__init__()
        # A 48-px face has no pixels to spare: the stem keeps full resolution and the
        # stages halve it four times (48 -> 3), unlike ImageNet ResNet's 4x stem.
        self.stem = nn.Sequential(nn.Conv2D(in_channels, WIDTHS[0], 3, padding=1, bias_attr=False),
                                  nn.BatchNorm2D(WIDTHS[0]), make_activation(activation))
        self.cbam = CBAM(WIDTHS[0])
        blocks, cin = [], WIDTHS[0]
        for width, count in zip(WIDTHS, BLOCKS):
            for i in range(count):
                blocks.append(AttentionBlock(cin, width, 2 if i == 0 else 1, activation))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2D(1)

    def forward(self, x):  # noqa: D102
        y = self.blocks(self.cbam(self.stem(x)))
        return paddle.flatten(self.pool(y), 1)
