"""benchmarks/peers.py's bookkeeping: image budgets from an earlier run's rates, one table built up
over several scoring runs under one protocol, the 64 -> 32 px box downsampling, mimicry's log."""

import argparse
import json
import sys
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import peers  # noqa: E402
from held_out import write_results  # noqa: E402
from test_results_files import problems  # noqa: E402

SHA = "0" * 64
RECORDED = dict(machine="AMD EPYC (AVX2, 2 cores)", precision=["fp32"],
                command="benchmarks/peers.py --data-root cifar10 --minutes 60 --out OUT",
                protocol={"feature_extractors": [{"name": "inception-v3-tf-2015-12-05", "kind": "inception",
                                                  "weights_sha256": SHA},
                                                 {"name": "fast", "kind": "fast", "weights_sha256": SHA}],
                          "generated": {"num_images": 10000, "seeds": "0-9999"},
                          "reference": {"root": "cifar10/test", "split": "test"}})


def peers_args(out: Path, **overrides) -> argparse.Namespace:
    values = dict(data_root="cifar10", classes=[], minutes=60.0, rates_from=Path("rates"), seed=0, num_gen=10000,
                  cpu="a test CPU", out=out, reference_name="test images")
    return argparse.Namespace(**{**values, **overrides})


def scored(fid: float, kimg: float = 10.0, cpu: str = "cpu A") -> dict:
    return {"kimg": kimg, "seconds": 60.0, "cpu": cpu, "fid": fid, "kid": 0.05, "precision": 0.5, "recall": 0.2,
            "fid_fast": 0.8, "kid_fast": 0.002}


def test_image_budget_is_the_earlier_rate_times_the_minutes(tmp_path):
    rates = tmp_path / "rates"
    rates.mkdir()
    (rates / "results.json").write_text(json.dumps({"results": {"mimicry-sngan": {"kimg": 7.0, "seconds": 900.0}}}))
    args = peers_args(tmp_path, rates_from=rates, minutes=60.0)
    assert peers.image_budget("mimicry-sngan", args) == pytest.approx(28.0)
    assert peers.image_budget("mimicry-sngan", peers_args(tmp_path, rates_from=None)) == 0.0  # the wall clock
    with pytest.raises(SystemExit, match="holds no rate .* for mimicry-dcgan"):
        peers.image_budget("mimicry-dcgan", args)


def test_scoring_again_under_the_same_protocol_keeps_the_earlier_rows(tmp_path):
    args = peers_args(tmp_path)
    assert peers.scored_before(args) == {}
    write_results(tmp_path, args, "table", **RECORDED, results={"dcgan-default": scored(57.2)})
    assert peers.scored_before(peers_args(tmp_path))["dcgan-default"]["fid"] == 57.2
    with pytest.raises(SystemExit, match="other num_gen; use another --out"):
        peers.scored_before(peers_args(tmp_path, num_gen=5000))
    with pytest.raises(SystemExit, match="other classes, minutes"):
        peers.scored_before(peers_args(tmp_path, classes=["automobile"], minutes=15.0))
    (tmp_path / "results.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match="is not a results file"):
        peers.scored_before(args)


def test_results_are_written_only_with_the_machine_precision_command_and_protocol(tmp_path):
    args = peers_args(tmp_path)
    entry = {**scored(57.2, cpu=RECORDED["machine"]), "train_precision": "fp32"}
    with pytest.raises(TypeError, match="protocol"):
        write_results(tmp_path, args, "table", **{k: v for k, v in RECORDED.items() if k != "protocol"},
                      results={"dcgan-default": entry})
    with pytest.raises(ValueError, match="machine"):
        write_results(tmp_path, args, "table", **{**RECORDED, "machine": ""}, results={"dcgan-default": entry})
    assert not (tmp_path / "results.json").exists()
    write_results(tmp_path, args, "table", **RECORDED, results={"dcgan-default": entry})
    document = json.loads((tmp_path / "results.json").read_text())
    assert problems(document) == [] and document["machine"] == RECORDED["machine"]
    assert peers.scored_before(args)["dcgan-default"]["fid"] == 57.2  # the args kept as before


def test_an_earlier_entry_without_its_machine_is_read_from_its_folder_or_refused(tmp_path):
    args = peers_args(tmp_path)
    (tmp_path / "mimicry-sngan").mkdir()
    (tmp_path / "mimicry-sngan" / "trained.json").write_text(json.dumps({"kimg": 7.0, "seconds": 900.0,
                                                                         "cpu": "cpu B"}))
    old = {k: v for k, v in scored(110.0).items() if k != "cpu"}  # written before entries recorded them
    kept = peers.complete_earlier({"mimicry-sngan": old, "lightweight-gan": {"note": "no CUDA"}}, [], args)
    assert kept["mimicry-sngan"]["cpu"] == "cpu B" and kept["mimicry-sngan"]["train_precision"] == "fp32"
    assert kept["mimicry-sngan"]["precision"] == 0.5  # the score is kept
    with pytest.raises(SystemExit, match="mimicry-dcgan records no machine"):
        peers.complete_earlier({"mimicry-dcgan": old}, [], args)
    assert peers.complete_earlier({"mimicry-dcgan": old}, ["mimicry-dcgan"], args) == {"mimicry-dcgan": old}


def test_table_gives_each_fid_as_a_multiple_of_the_default_and_names_the_cpus(tmp_path):
    results = {"dcgan-default": scored(50.0), "mimicry-sngan": scored(110.0, kimg=28.1, cpu="cpu B"),
               "lightweight-gan": {"note": "does not start without CUDA"}}
    table = peers.results_table(results, peers_args(tmp_path))
    assert "| mimicry-sngan | 28 | 110.0 | 2.20x |" in table
    assert "| dcgan-default | 10 | 50.0 | 1.00x |" in table
    assert "| lightweight-gan | - | does not start without CUDA |" in table
    assert "Trained on cpu A: dcgan-default." in table and "Trained on cpu B: mimicry-sngan." in table
    assert "(grids/mimicry-sngan.png)" in table and "grids/lightweight-gan" not in table


def test_64_pixel_samples_are_box_downsampled_to_the_data_resolution():
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    small = peers.to_uint8(images, 32)
    assert small.shape == (2, 3, 32, 32) and small.dtype == torch.uint8
    corner = images[:, :, :2, :2].mean(dim=(2, 3))
    expected = (corner.add(1).mul(127.5)).round().to(torch.uint8)
    assert torch.equal(small[:, :, 0, 0], expected)
    assert torch.equal(peers.to_uint8(images[:, :, :32, :32], 32), images[:, :, :32, :32].add(1).mul(127.5)
                       .round().to(torch.uint8))


def test_mimicry_log_keeps_plain_floats_without_a_warning():
    log = peers.MetricLog()
    loss = torch.tensor(0.5, requires_grad=True) * 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log.add_metric("errD", loss, group="loss")
        log.add_metric("lr_D", 2e-4)
    assert log == {"errD": pytest.approx(1.5), "lr_D": pytest.approx(2e-4)}
    assert all(type(value) is float for value in log.values())
