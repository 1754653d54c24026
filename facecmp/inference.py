"""The fast inference path: the backbone exported with paddle.jit.save, run by paddle.inference.

The export is cached beside the weights (or in the user cache when the model directory is
read-only, as for the bundled model in site-packages) and rebuilt when the weights change.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from facecmp.datasets import cache_dir
from facecmp.modeldir import BACKBONE
from facecmp.runtime import cpu_count, import_paddle

EXPORT_DIR = "inference"
EXPORT_VERSION = "2"  # bump when the export itself changes, so old exports are rebuilt


def _stamp(model_dir: Path) -> str:
    st = (model_dir / BACKBONE).stat()
    meta = (model_dir / "meta.json").read_bytes()
    key = f"{EXPORT_VERSION}|{st.st_size}|{st.st_mtime_ns}|".encode() + meta
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


def _export_to(net, meta: dict, target: Path) -> None:
    paddle = import_paddle()
    size = int(meta["input_size"])
    spec = [paddle.static.InputSpec([None, 3, size, size], "float32", "x")]
    backbone = copy.deepcopy(net.backbone)
    backbone.eval()
    fold_batch_norms(backbone)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        paddle.jit.save(backbone, str(tmp / "backbone"), input_spec=spec)
        tmp.chmod(0o755)  # mkdtemp makes it private; the export is as readable as the weights
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def exported_model(model_dir: Path) -> Path:
    """The directory holding the exported backbone for model_dir, exporting it if stale."""
    stamp = _stamp(model_dir)
    for base in (model_dir / EXPORT_DIR, cache_dir() / "export" / stamp):
        if (base / "stamp").is_file() and (base / "stamp").read_text() == stamp:
            return base
    from facecmp.modeldir import load_net

    net, meta = load_net(model_dir)
    for base in (model_dir / EXPORT_DIR, cache_dir() / "export" / stamp):
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
            _export_to(net, meta, base)
            (base / "stamp").write_text(stamp)
            return base
        except OSError:
            continue  # read-only install: fall back to the user cache
    raise OSError(f"cannot write an exported model for {model_dir}")


class Predictor:
    """A paddle.inference predictor (oneDNN on CPU) for an exported backbone."""

    def __init__(self, export_dir: Path, threads: int | None = None):
        import_paddle()
        from paddle import inference

        model = export_dir / "backbone.json"
        if not model.is_file():
            model = export_dir / "backbone.pdmodel"
        cfg = inference.Config(str(model), str(export_dir / "backbone.pdiparams"))
        cfg.disable_gpu()
        cfg.enable_mkldnn()
        cfg.set_cpu_math_library_num_threads(threads or cpu_count())
        cfg.disable_glog_info()
        self.predictor = inference.create_predictor(cfg)
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """N x 3 x S x S float32 -> N x 512 embeddings."""
        self.input.reshape(list(x.shape))
        self.input.copy_from_cpu(np.ascontiguousarray(x, dtype=np.float32))
        self.predictor.run()
        return self.output.copy_to_cpu()
