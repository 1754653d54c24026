"""Process set-up that must happen before Paddle is imported, in one place.

Paddle's bundled MKL takes a slow code path on AMD CPUs unless MKL_DEBUG_CPU_TYPE=5
(measured here: ResNet18 training 16 -> 72 img/s), OpenMP should use every core, and its
threads should not spin long after their work (KMP_BLOCKTIME).
The user's own environment always wins over these defaults.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from types import ModuleType


def cache_dir() -> Path:
    """Where facecmp caches prepared crops and exported models: $FACECMP_CACHE or ~/.cache/facecmp."""
    return Path(os.environ.get("FACECMP_CACHE", Path.home() / ".cache" / "facecmp"))


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _is_amd() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            head = f.read(4096)
    except OSError:
        return False
    return "AuthenticAMD" in head


def configure_environment() -> None:
    """Set thread and MKL defaults unless the user already set them."""
    threads = str(cpu_count())
    os.environ.setdefault("OMP_NUM_THREADS", threads)
    os.environ.setdefault("MKL_NUM_THREADS", threads)
    if _is_amd():
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
    # Paddle's OpenMP threads spin for 200 ms after each parallel region by default, holding
    # both cores while `compare` reads and detects the next photos; 1 ms costs training nothing
    # measurable and took a warm comparison of two LFW photos from 60 to 32 ms.
    os.environ.setdefault("KMP_BLOCKTIME", "1")
    os.environ.setdefault("GLOG_minloglevel", "2")


def import_paddle() -> ModuleType:
    """Import Paddle after configure_environment(), without its start-up warnings."""
    configure_environment()
    # Paddle prints a multi-line OMP_NUM_THREADS notice and a ccache warning on import;
    # neither is actionable for a user, so they are swallowed.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        import paddle
    paddle.disable_signal_handler()
    return paddle
