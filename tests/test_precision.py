"""--precision: bf16 autocast where the CPU has native bf16, fp32 otherwise, with one line saying which."""

import csv

import pytest
import torch

from dcgan.data import ImageData
from dcgan.errors import UserError
from dcgan.training import precision as precision_module
from dcgan.training.precision import resolve_precision


def test_auto_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", torch.device("cpu")).name == "bf16"
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    chosen = resolve_precision("auto", torch.device("cpu"))
    assert chosen.name == "fp32" and "no native bfloat16" in chosen.reason


def test_bf16_falls_back_to_fp32_without_native_support(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    chosen = resolve_precision("bf16", torch.device("cpu"))
    assert chosen.name == "fp32" and "falls back to fp32" in chosen.reason
    assert chosen.dtype is None and not chosen.needs_scaler


def test_fp32_is_never_autocast(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    chosen = resolve_precision("fp32", torch.device("cpu"))
    with chosen.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_unknown_precision_is_a_user_error():
    with pytest.raises(UserError, match="--precision must be one of auto, fp32, bf16"):
        resolve_precision("fp8", torch.device("cpu"))


@pytest.mark.parametrize("native", [True, False])
def test_training_runs_in_the_chosen_precision_with_finite_losses(tmp_path, cars, monkeypatch, capsys, native):
    from dcgan.config import resolve_config
    from dcgan.training.loop import train

    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    seen = []
    original = torch.nn.Conv2d._conv_forward

    def spy(self, input, weight, bias):
        out = original(self, input, weight, bias)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "_conv_forward", spy)
    few = ImageData(cars.images[:64], cars.labels[:64], cars.class_names)
    config = resolve_config("cpu-v1", overrides=dict(
        g_channels=8, d_channels=8, batch_size=16, log_every=1, grid_size=4, outdir=str(tmp_path),
        dataset="folder", classes=["automobile"], kimg=0.064, precision="bf16", r1_interval=2))
    run = train(config, data=few, show_progress=True)
    printed = capsys.readouterr().out
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(torch.isfinite(torch.tensor(float(r[k]))) for r in rows for k in ("loss_d", "loss_g"))
    if native:
        assert "precision: bfloat16 autocast" in printed and torch.bfloat16 in seen
    else:
        assert "falls back to fp32" in printed and set(seen) == {torch.float32}


def test_loss_scaled_float16_with_several_d_steps_r1_and_true_gradient_norms(tmp_path, cars, monkeypatch):
    # The CUDA --amp path, run on the CPU (float16 autocast and a GradScaler work there too): n_dis 2
    # steps D twice per G step (GradScaler allows one step per update), R1 differentiates D's
    # logits twice, and the logged gradient norms must be the true ones, not times the loss scale.
    from dcgan.config import resolve_config
    from dcgan.training import loop
    from dcgan.training.precision import Precision

    monkeypatch.setattr(loop, "resolve_precision",
                        lambda *args: Precision("fp16", "cpu", "float16 autocast with a gradient scaler (test)"))
    few = ImageData(cars.images[:64], cars.labels[:64], cars.class_names)
    config = resolve_config("cpu-v1", overrides=dict(
        g_channels=8, d_channels=8, batch_size=16, log_every=1, grid_size=4, outdir=str(tmp_path),
        dataset="folder", classes=["automobile"], kimg=0.128, n_dis=2, r1_gamma=1.0, r1_interval=2,
        d_norm="none", diffaugment=""))
    run = loop.train(config, data=few, show_progress=False)
    with open(run / "metrics.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["loss_d"]]
    assert len(rows) == 4 and all(float(r["loss_d"]) == float(r["loss_d"]) for r in rows)
    assert any(r["r1"] for r in rows)
    # The first loss scale is 65536: scaled norms would be in the thousands at least.
    assert all(0 < float(r["grad_norm_d"]) < 100 and 0 < float(r["grad_norm_g"]) < 100 for r in rows)
