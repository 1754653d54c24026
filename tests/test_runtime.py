"""Process set-up before Paddle is imported: defaults, and the user's own variables winning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEYS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "KMP_BLOCKTIME", "MKL_DEBUG_CPU_TYPE")
SCRIPT = ("import json, os; from facecmp.runtime import configure_environment, cpu_count; "
          "configure_environment(); print(json.dumps({**{k: os.environ.get(k) for k in %r}, "
          "'cores': cpu_count()}))" % (KEYS,))


def environment_after_setup(**given: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in KEYS}
    env.update(given, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


def test_defaults_use_every_core_and_short_spin():
    got = environment_after_setup()
    assert got["OMP_NUM_THREADS"] == got["MKL_NUM_THREADS"] == str(got["cores"])
    assert got["KMP_BLOCKTIME"] == "1"
    amd = "AuthenticAMD" in Path("/proc/cpuinfo").read_text(errors="ignore") \
        if Path("/proc/cpuinfo").exists() else False
    assert (got["MKL_DEBUG_CPU_TYPE"] == "5") == amd


def test_the_users_own_settings_win():
    got = environment_after_setup(OMP_NUM_THREADS="1", KMP_BLOCKTIME="200", MKL_DEBUG_CPU_TYPE="4")
    assert (got["OMP_NUM_THREADS"], got["KMP_BLOCKTIME"], got["MKL_DEBUG_CPU_TYPE"]) == ("1", "200", "4")
    assert got["MKL_NUM_THREADS"] == str(got["cores"])


LIGHT = """
import json, sys
import numpy as np
from pathlib import Path
from facecmp.inference import Predictor, exported_model
from facecmp.zoo import default_model

export = exported_model(default_model("identity"))
x = np.random.default_rng(0).random((4, 3, 64, 64), dtype=np.float32)
light = Predictor(export)(x)
before = "paddle" in sys.modules
from facecmp.runtime import import_paddle
paddle = import_paddle()
full = Predictor(export)(x)
print(json.dumps({"paddle_before": before, "diff": float(np.abs(light - full).max()),
                  "op": float(paddle.nn.functional.relu(paddle.to_tensor(x)).sum()),
                  "sum": float(x.sum())}))
"""


def test_a_predictor_runs_on_paddles_core_alone_and_paddle_imports_after_it():
    # a cold `compare` loads Paddle's core without the package (0.3 s instead of 1.3 s)
    out = subprocess.run([sys.executable, "-c", LIGHT], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["paddle_before"] is False
    assert got["diff"] == 0.0
    assert abs(got["op"] - got["sum"]) < 1e-2 * got["sum"]
