"""Where training runs and in what precision: `train.device` resolved against the Paddle build
and the GPUs it sees, and `train.amp` (automatic mixed precision, level O1) on a GPU only.

CPU is the default wherever no GPU build of Paddle sees a GPU. Under Paddle's launcher the
device is the launcher's (`--gpus` gives each process its own), whatever `train.device` says.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from facecmp.errors import FacecmpError
from facecmp.runtime import import_paddle

DEVICE_PATTERN = re.compile(r"auto|cpu|gpu(:\d+)?")  # gpu = gpu:0
AMP_CHOICES = ("none", "float16", "bfloat16")
NO_CUDA = ("this Paddle build has no CUDA (the CPU package is installed); install the GPU build "
           "(docs/training.md, GPU install), or set train.device to auto or cpu")


def check_device(value: str) -> str | None:
    """Why value is not a train.device setting, or None if it is."""
    if isinstance(value, str) and DEVICE_PATTERN.fullmatch(value):
        return None
    return f"train.device must be auto, cpu, gpu or gpu:N (N a GPU's index), got '{value}'"


def resolve(requested: str, launched: bool = False) -> str:
    """The Paddle device ("cpu", "gpu:N") that train.device names on this machine.

    auto is the first GPU when a GPU build of Paddle sees one, else cpu; asking for a GPU
    that is not there is a one-line FacecmpError, never a silent fall-back to the CPU.
    Under the launcher (launched), the device it gave this process.
    """
    paddle = import_paddle()
    if launched:
        return paddle.device.get_device()
    cuda = paddle.device.is_compiled_with_cuda()
    count = paddle.device.cuda.device_count() if cuda else 0
    if requested == "cpu" or (requested == "auto" and not count):
        return "cpu"
    if requested == "auto":
        return "gpu:0"
    if not cuda:
        raise FacecmpError(f"train.device {requested}: {NO_CUDA}")
    index = int(requested.partition(":")[2] or 0)
    if index >= count:
        raise FacecmpError(f"train.device {requested}: Paddle sees {count} GPU(s) (numbered from 0; "
                           f"CUDA_VISIBLE_DEVICES limits which)")
    return f"gpu:{index}"


def use(requested: str, launched: bool = False) -> str:
    """Resolve train.device and make it Paddle's device for this process; returns it."""
    device = resolve(requested, launched)
    if not launched:
        import_paddle().set_device(device)
    return device


def amp_configs(amp: str, device: str, warn: bool = True) -> dict[str, Any] | None:
    """paddle.Model.prepare's amp_configs for train.amp on device (None: float32).

    AMP runs on a GPU only: elsewhere it is ignored, with a one-line warning on stderr.
    bfloat16 keeps float32's exponent range, so it needs no loss scaling.
    """
    if amp == "none":
        return None
    if not device.startswith("gpu"):
        if warn:
            print(f"warning: train.amp {amp} is ignored on {device} (mixed precision runs on a GPU only)",
                  file=sys.stderr, flush=True)
        return None
    if amp == "bfloat16":
        return {"level": "O1", "use_dynamic_loss_scaling": False, "init_loss_scaling": 1.0}
    return {"level": "O1"}


def prepare(model, optimizer, loss, metrics, amp: str, device: str, warn: bool = True) -> None:
    """model.prepare(...) in train.amp's precision on device."""
    configs = amp_configs(amp, device, warn)
    model.prepare(optimizer, loss, metrics, amp_configs=configs)
    if configs and amp == "bfloat16":
        # Paddle 3.3's hapi has no dtype key in amp_configs (its auto_cast defaults to
        # float16), but passes these extra arguments to paddle.amp.auto_cast in train_batch
        model._adapter._amp_custom_lists["dtype"] = "bfloat16"
