"""Process set-up that must happen before Paddle is imported, in one place.

Paddle's bundled MKL takes a slow code path on AMD CPUs unless MKL_DEBUG_CPU_TYPE=5
(measured here: ResNet18 training 16 -> 72 img/s), OpenMP should use every core, and its
threads should not spin long after their work (KMP_BLOCKTIME).
The user's own environment always wins over these defaults.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import os
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any


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


_CORE_LOCK = threading.Lock()


def inference_api() -> tuple[Any, Any]:
    """paddle.inference's Config and create_predictor.

    Importing Paddle takes about 1.3 s, most of a cold `facecmp compare`; a predictor needs
    only Paddle's compiled core, which loads in about 0.3 s. So until something imports
    Paddle, the core is loaded alone and initialised as paddle/base/__init__.py does, and a
    later `import paddle` reuses it. Any failure falls back to importing Paddle.
    """
    if "paddle" not in sys.modules:
        with _CORE_LOCK:
            core = _paddle_core()
        if core is not None:
            return core.AnalysisConfig, core.create_predictor
    inference = import_paddle().inference
    return inference.Config, inference.create_predictor


@functools.lru_cache(maxsize=1)
def _paddle_core() -> ModuleType | None:
    """paddle.base.libpaddle, loaded and initialised without the paddle package, or None."""
    name = "paddle.base.libpaddle"
    if name in sys.modules:
        return sys.modules[name]
    configure_environment()
    try:
        package = importlib.util.find_spec("paddle")
        if package is None or package.origin is None:
            return None
        root = Path(package.origin).parent
        spec = importlib.util.spec_from_file_location(name, root / "base" / "libpaddle.so")
        if spec is None or spec.loader is None:
            return None
        core = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(core)
        core._set_paddle_lib_path(str(root / "libs"))
        flags = [key[len("FLAGS_"):] for key in core.globals().keys() if key.startswith("FLAGS_")]
        core.init_gflags(["--tryfromenv=" + ",".join(flags)])
        core.init_glog(sys.argv[0] if sys.argv and sys.argv[0] else "facecmp")
        core.init_memory_method()
        core.init_devices()
        core.init_tensor_operants()
        core.init_default_kernel_signatures()
        core.disable_signal_handler()
    except Exception:  # another build or layout of Paddle: import it the ordinary way
        return None
    sys.modules[name] = core  # `import paddle` later picks up this core instead of loading it again
    return core
