"""The fast inference path: the backbone (and, for classifiers, its head) exported with
paddle.jit.save, run by paddle.inference.

The export is cached beside the weights (or in the user cache when the model directory is
read-only, as for the bundled model in site-packages) and rebuilt when the weights change.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import shutil
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from facecmp.errors import FacecmpError
from facecmp.meta import META, ModelMeta
from facecmp.modeldir import BACKBONE, HEAD
from facecmp.runtime import cache_dir, cpu_count, import_paddle, inference_api

EXPORT_DIRS = {False: "inference", True: "inference-classifier"}  # by with_head
EXPORT_VERSION = "3"  # bump when the export itself changes, so old exports are rebuilt


def _stamp(model_dir: Path, with_head: bool) -> str:
    key = f"{EXPORT_VERSION}|{with_head}|".encode()
    for name in (BACKBONE, HEAD) if with_head else (BACKBONE,):
        st = (model_dir / name).stat()
        key += f"{name}|{st.st_size}|{st.st_mtime_ns}|".encode()
    key += (model_dir / META).read_bytes()
    return hashlib.sha1(key).hexdigest()[:16]


def _folded_conv(conv, bn):
    """A convolution with the batch norm that follows it folded into its weights and bias."""
    paddle = import_paddle()
    scale = bn.weight.numpy() / np.sqrt(bn._variance.numpy() + bn._epsilon)
    bias = conv.bias.numpy() if conv.bias is not None else np.zeros(len(scale), np.float32)
    out = paddle.nn.Conv2D(conv._in_channels, conv._out_channels, conv._kernel_size,
                           stride=conv._stride, padding=conv._padding, dilation=conv._dilation,
                           groups=conv._groups, data_format=conv._data_format)
    out.weight.set_value((conv.weight.numpy() * scale[:, None, None, None]).astype(np.float32))
    out.bias.set_value(((bias - bn._mean.numpy()) * scale + bn.bias.numpy()).astype(np.float32))
    return out


def fold_batch_norms(layer) -> int:
    """Fold every Conv2D directly followed by a BatchNorm2D (convN/bnN, or in a Sequential).

    paddle.inference otherwise spends ~2 s folding them at every predictor start.
    Returns how many were folded; the layer must be in eval mode.
    """
    nn = import_paddle().nn
    count = 0
    children = dict(layer.named_children())
    for name, child in children.items():
        partner = None
        if isinstance(child, nn.Conv2D):
            if isinstance(layer, nn.Sequential):
                names = list(children)
                nxt = names.index(name) + 1
                partner = names[nxt] if nxt < len(names) else None
            elif name.startswith("conv"):
                partner = "bn" + name[4:]
        bn = children.get(partner) if partner else None
        if isinstance(bn, nn.BatchNorm2D):
            setattr(layer, name, _folded_conv(child, bn))
            setattr(layer, partner, nn.Identity())
            count += 1
        elif not isinstance(child, nn.Conv2D):
            count += fold_batch_norms(child)
    return count


def _leaky_relus_as_max(layer) -> int:
    """Replace every LeakyReLU of slope at most 1 with max(x, slope * x), the same function.

    paddle.inference 3.3 crashes (a segfault in conv_activation_mkldnn_fuse_pass) on an
    exported convolution followed by leaky_relu, as in the mask model. Returns how many.
    """
    nn = import_paddle().nn

    class MaxLeaky(nn.Layer):
        def __init__(self, slope: float) -> None:
            super().__init__()
            self.slope = slope

        def forward(self, x):  # noqa: D102
            return import_paddle().maximum(x, x * self.slope)

    count = 0
    for name, child in layer.named_children():
        if isinstance(child, nn.LeakyReLU) and child._negative_slope <= 1:
            setattr(layer, name, MaxLeaky(float(child._negative_slope)))
            count += 1
        else:
            count += _leaky_relus_as_max(child)
    return count


def _export_to(net, meta: ModelMeta, target: Path, with_head: bool) -> None:
    paddle = import_paddle()
    size = meta.input_size
    spec = [paddle.static.InputSpec([None, 3, size, size], "float32", "x")]
    backbone = copy.deepcopy(net.backbone)
    backbone.eval()
    fold_batch_norms(backbone)
    _leaky_relus_as_max(backbone)
    # a classifier exports backbone then head (its logits); dropout is off at inference anyway
    layer = paddle.nn.Sequential(backbone, net.head) if with_head else backbone
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        paddle.jit.save(layer, str(tmp / "backbone"), input_spec=spec)
        tmp.chmod(0o755)  # mkdtemp makes it private; the export is as readable as the weights
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def exported_model(model_dir: Path, with_head: bool = False) -> Path:
    """The directory holding model_dir's exported backbone (with_head: backbone + head,
    giving logits), exporting it if stale."""
    stamp = _stamp(model_dir, with_head)
    places = (model_dir / EXPORT_DIRS[with_head], cache_dir() / "export" / stamp)
    for base in places:
        if (base / "stamp").is_file() and (base / "stamp").read_text() == stamp:
            return base
    from facecmp.modeldir import load_net

    net, meta = load_net(model_dir, with_head=with_head)
    for base in places:
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
            _export_to(net, meta, base, with_head)
            (base / "stamp").write_text(stamp)
            return base
        except OSError:
            continue  # read-only install: fall back to the user cache
    raise OSError(f"cannot write an exported model for {model_dir}")


class Predictor:
    """A paddle.inference predictor (oneDNN on CPU) for an exported backbone."""

    def __init__(self, export_dir: Path, threads: int | None = None):
        config, create_predictor = inference_api()

        model = export_dir / "backbone.json"
        if not model.is_file():
            model = export_dir / "backbone.pdmodel"
        cfg = config(str(model), str(export_dir / "backbone.pdiparams"))
        cfg.disable_gpu()
        cfg.enable_mkldnn()
        cfg.set_cpu_math_library_num_threads(threads or cpu_count())
        cfg.disable_glog_info()
        self.predictor = create_predictor(cfg)
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """N x 3 x S x S float32 -> N x 512 embeddings (N x classes logits for a classifier)."""
        return network_thread().submit(self._run, x).result()

    def _run(self, x: np.ndarray) -> np.ndarray:
        self.input.reshape(list(x.shape))
        self.input._copy_from_cpu_bind(np.ascontiguousarray(x, dtype=np.float32))  # copy_from_cpu without Paddle's type check
        self.predictor.run()
        return self.output.copy_to_cpu()


@functools.lru_cache(maxsize=1)
def network_thread() -> ThreadPoolExecutor:
    """The one thread every predictor runs on. A predictor run from a thread other than the
    last one's failed ("std::exception") once that thread had ended, and each thread that runs
    the networks keeps its own oneDNN state (about 170 MB for the bundled models): one thread
    keeps that state once, whatever threads call. One pass at a time already uses every core."""
    return ThreadPoolExecutor(1, thread_name_prefix="facecmp-net")


def fast_predictor(model_dir: Path, with_head: bool = False) -> Predictor | None:
    """The paddle.inference predictor for a model, or None where that path is unavailable."""
    try:
        return Predictor(exported_model(model_dir, with_head))
    except FacecmpError:
        raise
    except Exception as exc:  # no oneDNN, read-only disk, ...: the plain forward still works
        print(f"note: fast inference unavailable ({type(exc).__name__}); using the plain forward pass",
              file=sys.stderr)
        return None


class ModelRunner:
    """A model directory's network as a numpy function: the backbone (embeddings) or, with
    with_head, backbone + head (logits); the fast path where available, else the plain forward."""

    def __init__(self, model_dir: Path, with_head: bool = False, fast: bool = True) -> None:
        self.with_head = with_head
        # the plain forward one pass at a time, as predictors run on network_thread(): one
        # pass already uses every core; detection and alignment overlap across threads
        self.lock = threading.Lock()
        self.predictor = fast_predictor(model_dir, with_head) if fast else None
        self.net = None
        if self.predictor is None:
            from facecmp.modeldir import load_net

            self.net, _ = load_net(model_dir, with_head=with_head)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """N x 3 x S x S float32 network input -> N x 512 embeddings (N x classes logits)."""
        if self.predictor is not None:
            return self.predictor(x)
        with self.lock:
            paddle = import_paddle()
            with paddle.no_grad():
                layer = self.net if self.with_head else self.net.backbone
                return layer(paddle.to_tensor(x)).numpy()
