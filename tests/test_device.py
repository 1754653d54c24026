"""train.device and train.amp: their validation, the device they resolve to on this CPU-only
machine (and on a pretend GPU build), AMP ignored on CPU with a warning, and the AMP settings
Paddle's Model receives."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_class_tree

from facecmp import device
from facecmp.cli import main
from facecmp.config import load_config
from facecmp.errors import FacecmpError
from facecmp.runtime import import_paddle

paddle = import_paddle()


@pytest.fixture
def cpu_only():
    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count():
        pytest.skip("a GPU is visible: these tests are of a CPU-only machine")


@pytest.fixture
def two_gpus(monkeypatch):
    """A GPU build of Paddle that sees two GPUs, as far as facecmp.device asks."""
    monkeypatch.setattr(paddle.device, "is_compiled_with_cuda", lambda: True)
    monkeypatch.setattr(paddle.device.cuda, "device_count", lambda: 2)


def test_device_and_amp_settings_are_validated():
    for value in ("auto", "cpu", "gpu", "gpu:0", "gpu:3"):
        assert load_config("identity", overrides={"train": {"device": value}}).train.device == value
    for value in ("tpu", "gpu:", "gpu:a", "GPU", "cuda:0", "gpu:-1"):
        with pytest.raises(FacecmpError, match=r"train.device must be auto, cpu, gpu or gpu:N .*got '"):
            load_config("identity", overrides={"train": {"device": value}})
    with pytest.raises(FacecmpError, match="train.device must be a string"):
        load_config("identity", overrides={"train": {"device": 0}})
    for value in ("none", "float16", "bfloat16"):
        assert load_config("identity", overrides={"train": {"amp": value}}).train.amp == value
    with pytest.raises(FacecmpError, match="train.amp must be one of none, float16, bfloat16, got 'fp16'"):
        load_config("identity", overrides={"train": {"amp": "fp16"}})
    defaults = load_config("identity").train
    assert (defaults.device, defaults.amp) == ("auto", "none")


def test_on_this_machine_auto_is_the_cpu_and_a_gpu_is_a_clear_error(cpu_only):
    assert device.resolve("auto") == device.resolve("cpu") == "cpu"
    for asked in ("gpu", "gpu:1"):
        with pytest.raises(FacecmpError, match=f"train.device {asked}: this Paddle build has no CUDA") as exc:
            device.resolve(asked)
        assert "\n" not in str(exc.value)
    assert device.resolve("gpu:1", launched=True) == "cpu"  # the launcher's device, whatever was asked
    from facecmp.distributed import launched

    assert not launched({}) and launched({"PADDLE_TRAINERS_NUM": "1", "PADDLE_TRAINER_ID": "0"})


def test_with_gpus_auto_takes_the_first_and_an_index_must_exist(two_gpus):
    assert device.resolve("auto") == device.resolve("gpu") == "gpu:0"
    assert device.resolve("gpu:1") == "gpu:1" and device.resolve("cpu") == "cpu"
    with pytest.raises(FacecmpError, match=r"train.device gpu:2: Paddle sees 2 GPU\(s\)"):
        device.resolve("gpu:2")


def test_amp_is_ignored_on_cpu_with_one_warning_line(capsys):
    assert device.amp_configs("none", "gpu:0") is None
    assert device.amp_configs("float16", "cpu") is None
    err = capsys.readouterr().err
    assert err == "warning: train.amp float16 is ignored on cpu (mixed precision runs on a GPU only)\n"
    assert device.amp_configs("bfloat16", "cpu", warn=False) is None and not capsys.readouterr().err
    assert device.amp_configs("float16", "gpu:0") == {"level": "O1"}
    assert device.amp_configs("bfloat16", "gpu:1") == {"level": "O1", "use_dynamic_loss_scaling": False,
                                                       "init_loss_scaling": 1.0}


def _tiny_model():
    net = paddle.nn.Linear(4, 2)
    spec = paddle.static.InputSpec
    model = paddle.Model(net, inputs=[spec([None, 4], "float32", "x")], labels=[spec([None, 1], "int64", "y")])
    return model, paddle.optimizer.Adam(1e-3, parameters=net.parameters())


@pytest.mark.parametrize("amp", ["float16", "bfloat16"])
def test_the_amp_setting_reaches_paddles_auto_cast(amp, monkeypatch):
    model, opt = _tiny_model()
    device.prepare(model, opt, paddle.nn.CrossEntropyLoss(), paddle.metric.Accuracy(), amp, "cpu", warn=False)
    assert model._adapter._amp_level == "O0"  # ignored on CPU
    model, opt = _tiny_model()
    device.prepare(model, opt, paddle.nn.CrossEntropyLoss(), paddle.metric.Accuracy(), amp, "gpu:0")
    seen, real = [], paddle.amp.auto_cast  # on a CPU, Paddle's auto_cast then does nothing
    monkeypatch.setattr(paddle.amp, "auto_cast", lambda *a, **k: seen.append(k) or real(*a, **k))
    model.train_batch([np.ones((3, 4), "float32")], [np.zeros((3, 1), "int64")])
    assert seen[0]["enable"] and seen[0]["level"] == "O1" and seen[0].get("dtype", "float16") == amp


def test_a_gpu_asked_for_on_a_cpu_machine_stops_train_in_one_line(tmp_path, cpu_only):
    root = make_class_tree(tmp_path / "d", classes=2, per_class=3)
    config = tmp_path / "gpu.yaml"
    config.write_text("train: {device: gpu, amp: float16}\n")
    res = CliRunner().invoke(main, ["train", "--data", str(root), "--config", str(config),
                                    "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "this Paddle build has no CUDA" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_one_epoch_trains_with_the_settings_present(tmp_path, capfd, cpu_only):
    from facecmp.trainer import train

    root = make_class_tree(tmp_path / "d", classes=3, per_class=6)
    cfg = load_config("identity", overrides={"data": {"input_size": 32},
                                             "train": {"epochs": 1, "batch_size": 8, "device": "auto",
                                                       "amp": "bfloat16"}})
    summary = train(cfg, [root], tmp_path / "run", verbose=0)
    assert summary["epochs"] == 1 and (summary["device"], summary["amp"]) == ("cpu", "none")
    assert "warning: train.amp bfloat16 is ignored on cpu" in capfd.readouterr().err
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "device: auto" in saved and "amp: bfloat16" in saved
    assert (tmp_path / "run" / "model" / "backbone.pdparams").exists()
