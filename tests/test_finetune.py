"""Fine-tuning: --init-from starts G, its EMA and D from another model's weights; --freeze-d keeps
D's first blocks fixed."""

import json

import pytest
import torch

from dcgan.checkpoint import load_checkpoint, read_generator_file
from dcgan.data import ImageData
from dcgan.errors import UserError
from dcgan.pretrained import model_file
from dcgan.training.loop import train
from test_train import small_config


@pytest.fixture(scope="module")
def few_cars(cars):
    return ImageData(cars.images[:160], cars.labels[:160], cars.class_names)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, few_cars):
    """A short run to start from."""
    return train(small_config(tmp_path_factory.mktemp("source"), kimg=0.064), data=few_cars, show_progress=False)


def frozen_config(tmp_path, **overrides):
    """One step that changes no weight (learning rates of 1e-30, no EMA): the weights are what the run started from."""
    return small_config(tmp_path, kimg=0.016, lr_g=1e-30, lr_d=1e-30, ema_kimg=0.0, lr_decay="none", **overrides)


def test_a_run_starts_from_a_run_folders_weights_with_fresh_optimizers(tmp_path, few_cars, source_run):
    flipped = ImageData(few_cars.images.flip(-1), few_cars.labels, few_cars.class_names)  # other images
    run = train(frozen_config(tmp_path, init_from=str(source_run)), data=flipped, show_progress=False)
    source, tuned = load_checkpoint(source_run / "checkpoint-last.pt"), load_checkpoint(run / "checkpoint-last.pt")
    for key in ("G", "D"):
        for name, tensor in source[key].items():
            if tensor.is_floating_point() and "running" not in name:  # BatchNorm statistics move in one step
                assert torch.equal(tensor, tuned[key][name]), (key, name)
    assert tuned["step"] == 1 and tuned["opt_G"]["state"][0]["step"] == 1  # Adam's moments started over
    summary = json.loads((run / "summary.json").read_text())
    assert summary["init_from"] == {"from": str(source_run / "checkpoint-last.pt"), "discriminator": True}


def test_a_generator_file_without_a_discriminator_starts_g_only(tmp_path, few_cars, capsys):
    config = frozen_config(tmp_path, init_from=str(model_file("cifar10-cars")), g_channels=64, batch_size=16)
    run = train(config, data=few_cars, show_progress=False)
    assert "holds no discriminator, so D starts from random weights" in capsys.readouterr().out
    shipped, _, _ = read_generator_file(model_file("cifar10-cars"))
    tuned = load_checkpoint(run / "checkpoint-last.pt")["G"]  # a step of lr 1e-30 moves only exact zeros
    torch.testing.assert_close(tuned["main.0.weight"], shipped["main.0.weight"].float(), rtol=0, atol=1e-20)
    assert json.loads((run / "summary.json").read_text())["init_from"]["discriminator"] is False


def test_the_shipped_cars_start_g_and_d(tmp_path, few_cars):
    from dcgan.checkpoint import read_discriminator
    from dcgan.pretrained import shipped_model

    config = frozen_config(tmp_path, init_from="cifar10-cars", g_channels=64, d_channels=64, batch_size=16)
    run = train(config, data=few_cars, show_progress=False)
    shipped_d, _ = read_discriminator(shipped_model("cifar10-cars").folder / "discriminator.safetensors")
    tuned = load_checkpoint(run / "checkpoint-last.pt")["D"]
    torch.testing.assert_close(tuned["head.weight"], shipped_d["head.weight"].float(), rtol=0, atol=1e-20)
    assert json.loads((run / "summary.json").read_text())["init_from"]["discriminator"] is True


def test_another_network_is_one_line_naming_the_difference(tmp_path, few_cars, source_run):
    with pytest.raises(UserError, match="its generator is not this run's .*base_channels 8 there, 16 here"):
        train(frozen_config(tmp_path, init_from=str(source_run), g_channels=16), data=few_cars, show_progress=False)
    with pytest.raises(UserError, match="neither a shipped model"):
        train(frozen_config(tmp_path, init_from=str(tmp_path / "absent")), data=few_cars, show_progress=False)


def test_freeze_d_keeps_the_first_blocks_fixed_and_trains_the_rest(tmp_path, few_cars, source_run):
    config = small_config(tmp_path, kimg=0.064, init_from=str(source_run), freeze_d=2, lr_decay="none")
    run = train(config, data=few_cars, show_progress=False)
    source = load_checkpoint(source_run / "checkpoint-last.pt")["D"]
    tuned = load_checkpoint(run / "checkpoint-last.pt")["D"]
    for name in ("features.0.weight", "features.0.bias", "features.2.weight", "features.3.weight"):
        assert torch.equal(source[name], tuned[name]), name  # blocks 1 and 2: conv, then conv and its norm
    assert not torch.equal(source["features.5.weight"], tuned["features.5.weight"])  # block 3 trained
    assert not torch.equal(source["head.weight"], tuned["head.weight"])
    with pytest.raises(UserError, match="--freeze-d 9: this discriminator has 3 blocks"):
        train(small_config(tmp_path, kimg=0.016, freeze_d=9), data=few_cars, show_progress=False)


def test_a_shipped_model_with_its_discriminator_gives_both(tmp_path, few_cars, source_run, monkeypatch):
    import dcgan.pretrained
    from dcgan.checkpoint import load_generator, save_discriminator, save_generator
    from dcgan.models import build_discriminator

    state = load_checkpoint(source_run / "checkpoint-last.pt")
    folder = tmp_path / "pretrained" / "tiny-cars"
    folder.mkdir(parents=True)
    generator, kwargs = load_generator(source_run / "checkpoint-last.pt")
    save_generator(generator, kwargs, folder / "generator.safetensors", dtype=torch.float16)
    discriminator = build_discriminator(**state["discriminator_kwargs"])
    discriminator.load_state_dict(state["D"])
    save_discriminator(discriminator, state["discriminator_kwargs"], folder / "discriminator.safetensors",
                       dtype=torch.float16)
    (folder / "card.json").write_text(json.dumps({"name": "tiny-cars", "file": "generator.safetensors"}))
    monkeypatch.setattr(dcgan.pretrained, "PRETRAINED_DIR", tmp_path / "pretrained")

    run = train(frozen_config(tmp_path, init_from="tiny-cars"), data=few_cars, show_progress=False)
    tuned = load_checkpoint(run / "checkpoint-last.pt")["D"]
    assert torch.equal(tuned["head.weight"], state["D"]["head.weight"].half().float())  # float16 on the way
    assert json.loads((run / "summary.json").read_text())["init_from"]["discriminator"] is True


def test_a_shipped_models_name_wins_over_a_data_folder_of_that_name(tmp_path, monkeypatch):
    from dcgan.training.init_from import read_source

    (tmp_path / "cifar10" / "train").mkdir(parents=True)  # the dataset, beside the user's runs
    monkeypatch.chdir(tmp_path)
    source = read_source("cifar10")
    assert source.origin.startswith("cifar10 (") and source.D is not None


def test_fine_tuning_on_a_small_folder_augments_d_unless_told_not_to(tmp_path, few_cars, source_run, capsys,
                                                                      monkeypatch):
    import dcgan.augment

    calls = []
    augment = dcgan.augment.diff_augment
    monkeypatch.setattr(dcgan.augment, "diff_augment", lambda x, policy: calls.append(policy) or augment(x, policy))
    train(frozen_config(tmp_path / "auto", init_from=str(source_run)), data=few_cars)
    assert "augmentation: DiffAugment color,translation,cutout (fine-tuning on 160 images" in capsys.readouterr().out
    assert calls and all(policy == ["color", "translation", "cutout"] for policy in calls)
    calls.clear()
    train(frozen_config(tmp_path / "off", init_from=str(source_run), diffaugment="none"), data=few_cars)
    assert "augmentation:" not in capsys.readouterr().out and not calls
    train(frozen_config(tmp_path / "scratch"), data=few_cars)  # from random weights: the recipe has no augmentation
    assert "augmentation:" not in capsys.readouterr().out and not calls
