"""benchmarks/budget_sweep.py end to end: two tiny configs, trained by `dcgan train`, scored on held-out cars."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_results_files import problems

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sweep_trains_and_scores_two_tiny_configs_then_extends_them(tmp_path, cifar_root, fast_extractor_file):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("common: {g_channels: 8, d_channels: 8, batch_size: 16, grid_size: 4}\n"
                     "configs:\n"
                     "  - {name: tiny-cpu-v1, preset: cpu-v1}\n"
                     "  - {name: tiny-classic, preset: classic, batch_size: 32}\n")
    out, runs = tmp_path / "out", tmp_path / "runs"

    def sweep_at(kimg: str) -> dict:
        command = [sys.executable, str(REPO / "benchmarks" / "budget_sweep.py"), str(sweep), "--data-root",
                   str(cifar_root), "--classes", "automobile", "--kimg", kimg, "--seeds", "0", "--jobs", "2",
                   "--num-gen", "64", "--fast-extractor", str(fast_extractor_file), "--runs", str(runs),
                   "--out", str(out)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return json.loads((out / "results.json").read_text())["results"]

    first = sweep_at("0.064")
    assert set(first) == {"tiny-cpu-v1", "tiny-classic"}
    default, classic = first["tiny-cpu-v1"][0], first["tiny-classic"][0]
    assert default["kimg"] == 0.064 and classic["kimg"] == 0.064
    assert default["fid_fast_ema"] > 0 and default["fid_fast_raw"] > 0
    assert default["kid_fast_ema"] == default["kid_fast_ema"]  # not NaN
    assert "fid_fast_ema" not in classic and classic["fid_fast_raw"] > 0  # classic has no EMA generator
    table = (out / "results.md").read_text()
    assert "| tiny-cpu-v1 |" in table and "| tiny-classic |" in table and "1,000 test images" in table
    assert (out / "grids" / "tiny-cpu-v1.png").is_file() and (out / "grids" / "tiny-classic.png").is_file()
    # A larger budget resumes the same runs (no new run folders) up to it.
    second = sweep_at("0.128")
    assert second["tiny-cpu-v1"][0]["kimg"] == 0.128 and second["tiny-cpu-v1"][0]["run"] == default["run"]
    assert len(list((runs / "tiny-cpu-v1-s0").glob("0*"))) == 1


def test_a_conditional_config_gets_class_accuracy_and_a_row_per_class(tmp_path, cifar_root, fast_extractor_file):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("configs:\n  - {name: tiny-acgan, conditional: acgan, g_channels: 8, d_channels: 8, "
                     f"batch_size: 16, grid_size: 4, metric: fid-fast, metric_every: 0.032kimg, metric_samples: 32, "
                     f"fast_extractor: '{fast_extractor_file}'}}\n")
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "benchmarks" / "budget_sweep.py"), str(sweep), "--data-root",
               str(cifar_root), "--classes", "airplane,frog", "--kimg", "0.064", "--seeds", "0", "--num-gen", "64",
               "--fast-extractor", str(fast_extractor_file), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    document = json.loads((out / "results.json").read_text())
    scored = document["results"]["tiny-acgan"][0]
    assert 0 <= scored["class_accuracy"] <= 1 and scored["intra_fid_fast"] > 0
    # What the run recorded, the command line and the protocol: a results file the docs' schema accepts.
    from dcgan.devices import cpu_name

    assert problems(document) == []
    assert document["machine"] == scored["machine"] == cpu_name()
    assert document["precision"] == [scored["precision"]] and scored["precision"] in ("fp32", "bf16")
    assert document["command"].startswith("benchmarks/budget_sweep.py ") and "--kimg 0.064" in document["command"]
    protocol = document["protocol"]
    assert protocol["feature_extractor"]["kind"] == "fast" and protocol["generated"]["num_images"] == 64
    assert protocol["reference"]["split"] == "test" and protocol["reference"]["classes"] == ["airplane", "frog"]
    assert [kimg for kimg, _ in scored["tracked_curve"]] == [0.032, 0.064]  # drawn in curves.png
    assert scored["tracked_curve"][-1][1] == pytest.approx(scored["tracked_last"])
    assert (out / "curves.png").stat().st_size > 1000
    assert "class accuracy" in (out / "results.md").read_text()
    from PIL import Image

    assert Image.open(out / "grids" / "tiny-acgan.png").size == (2 + 8 * 34, 2 + 2 * 34)  # two classes, 8 seeds


def test_bad_sweep_file_and_data_folder_give_one_line(tmp_path):
    script = str(REPO / "benchmarks" / "budget_sweep.py")
    missing = subprocess.run([sys.executable, script, str(tmp_path / "none.yaml"), "--data-root", str(tmp_path),
                              "--kimg", "1", "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert missing.stderr.strip() == f"sweep file not found: {tmp_path / 'none.yaml'}"
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("configs:\n  - {name: a, preset: classic}\n")
    no_data = subprocess.run([sys.executable, script, str(sweep), "--data-root", str(tmp_path / "nothing"),
                              "--kimg", "1", "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert no_data.returncode != 0 and "Traceback" not in no_data.stderr
    assert no_data.stderr.startswith("budget_sweep: data folder") and len(no_data.stderr.strip().splitlines()) == 1
