"""The Python API (`import dcgan`) gives what the CLI gives, by the same code. These tests need
only the shipped generators, not the CIFAR-10 archive."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import dcgan
from dcgan.cli import main


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, generated_cars):
    """The generated cars as a one-class image folder (a stand-in dataset and reference)."""
    root = tmp_path_factory.mktemp("folder")
    (root / "car").mkdir()
    for index, image in enumerate(generated_cars.images[:48]):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / "car" / f"{index}.png")
    return root


def test_generate_gives_the_cli_images_seed_for_seed(shipped_cars, tmp_path, capsys):
    images = dcgan.generate(shipped_cars, seeds=[5, 9, 2])
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.uint8
    assert main(["generate", "--model", "cifar10-cars", "--seed", "5", "--num", "5", "--outdir", str(tmp_path)]) == 0
    cli = {int(p.stem.removeprefix("seed")): np.asarray(Image.open(p)) for p in tmp_path.glob("*.png")}
    assert np.array_equal(cli[5], images[0].permute(1, 2, 0).numpy())
    assert np.array_equal(cli[9], images[1].permute(1, 2, 0).numpy())
    assert torch.equal(dcgan.generate(shipped_cars, seeds=3), dcgan.generate(shipped_cars, seeds=[0, 1, 2]))


def test_load_generator_by_name_by_file_and_pil_output(shipped_cars):
    from dcgan.pretrained import model_file

    by_file = dcgan.load_generator(model_file("cifar10-cars"))
    assert torch.equal(dcgan.generate(by_file, [4]), dcgan.generate(shipped_cars, [4]))
    pictures = dcgan.generate("cifar10-cars", [4, 5], pil=True)
    assert [p.size for p in pictures] == [(32, 32)] * 2
    assert np.array_equal(np.asarray(pictures[0]), dcgan.generate(shipped_cars, [4])[0].permute(1, 2, 0).numpy())


def test_generate_by_class_and_clear_errors(shipped_cars):
    conditional = dcgan.load_generator("cifar10")
    horses = dcgan.generate(conditional, [0, 1], label="horse")
    assert torch.equal(horses, dcgan.generate(conditional, [0, 1], label=conditional.class_names.index("horse")))
    assert not torch.equal(horses, dcgan.generate(conditional, [0, 1], label="ship"))
    with pytest.raises(dcgan.UserError, match="not class-conditional"):
        dcgan.generate(shipped_cars, [0], label="horse")
    with pytest.raises(dcgan.UserError, match="unknown model|not found"):
        dcgan.load_generator("no-such-model")
    with pytest.raises(dcgan.UserError, match="seeds"):
        dcgan.generate(shipped_cars, [-1])


def test_evaluate_a_generator_its_images_and_the_cli_agree(shipped_cars, image_folder, untrained_fast_extractor,
                                                           tmp_path, capsys):
    options = dict(features="fast", fast_extractor=str(untrained_fast_extractor), metrics=["fid", "kid"], num_gen=40)
    of_generator = dcgan.evaluate(shipped_cars, image_folder, **options)
    of_images = dcgan.evaluate(dcgan.generate(shipped_cars, range(40)), image_folder, **options)
    assert of_generator.scores["fid_fast"] > 0
    assert of_generator.scores == of_images.scores
    assert of_generator.record["protocol"]["generated"]["seeds"] == "0-39"
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--model", "cifar10-cars", "--ref", str(image_folder), "--features", "fast",
                 "--fast-extractor", str(untrained_fast_extractor), "--metrics", "fid,kid", "--num-gen", "40",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["evaluations"][0]["scores"] == of_generator.scores
    with pytest.raises(dcgan.UserError, match="uint8"):
        dcgan.evaluate(torch.zeros(4, 3, 32, 32), image_folder, **options)
    with pytest.raises(dcgan.UserError, match="metrics take"):
        dcgan.evaluate(shipped_cars, image_folder, **{**options, "metrics": ["fdi"]})


def test_train_from_a_config_object(image_folder, tmp_path):
    config = dcgan.TrainConfig(dataset="folder", data_root=str(image_folder), g_channels=8, d_channels=8,
                               batch_size=16, kimg=0.032, outdir=str(tmp_path), threads=1)
    run = dcgan.train(config, preset="classic")
    assert json.loads((run / "config.json").read_text())["preset"] == "classic"
    assert json.loads((run / "config.json").read_text())["g_channels"] == 8
    generator = dcgan.load_generator(run)
    assert dcgan.generate(generator, 2).shape == (2, 3, 32, 32)


def test_a_run_that_records_a_retired_preset_name_still_resumes(image_folder, tmp_path, capsys):
    """Runs record every setting; a preset name that selects nothing now ("modern") is their label only."""
    from dcgan.checkpoint import load_checkpoint, save_checkpoint

    run = dcgan.train(dcgan.TrainConfig(dataset="folder", data_root=str(image_folder), g_channels=8, d_channels=8,
                                        batch_size=16, kimg=0.032, outdir=str(tmp_path), threads=1))
    state = load_checkpoint(run / "checkpoint-last.pt")
    state["config"]["preset"] = "modern"
    save_checkpoint(state, run / "checkpoint-last.pt")
    assert main(["train", "--resume", str(run), "--kimg", "0.064"]) == 0
    resumed = load_checkpoint(run / "checkpoint-last.pt")
    assert resumed["config"]["preset"] == "modern" and resumed["config"]["g_channels"] == 8
    assert resumed["step"] == 4
    assert main(["train", "--preset", "modern", "--dry-run"]) == 2
    assert "--preset must be one of cpu-v1, classic, default" in capsys.readouterr().err
