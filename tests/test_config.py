import json

import pytest

from dcgan.config import (
    AUGMENTS,
    DEFAULT_PRESET,
    LOSSES,
    PRESETS,
    SMALL_FOLDER_IMAGES,
    TrainConfig,
    resolve_config,
)
from dcgan.errors import UserError


def test_classic_preset_is_radford_et_al():
    c = resolve_config("classic")
    assert (c.loss, c.g_norm, c.d_norm, c.spectral_norm) == ("bce", "batch", "batch", False)
    assert (c.lr_g, c.lr_d, c.beta1, c.beta2, c.batch_size, c.z_dim) == (2e-4, 2e-4, 0.5, 0.999, 128, 100)
    assert c.ema_kimg == 0 and c.augment_policy(50_000) == [] and c.r1_gamma == 0


def test_cpu_v1_is_the_default_preset():
    c = resolve_config()
    # docs/recipe.md: Radford's networks and loss, batch 64, both lrs doubled with D's twice G's, Adam beta2
    # 0.99, plus an EMA generator (with standing statistics); the lr decay only for long runs.
    classic = resolve_config("classic")
    assert c.preset == "cpu-v1" and c.loss == "bce" and not c.spectral_norm and c.d_norm == "batch"
    assert (c.g_channels, c.d_channels, c.batch_size, c.z_dim) == (64, 64, 64, 100) and classic.batch_size == 128
    assert c.beta1 == classic.beta1 == 0.5 and c.lr_g == 2 * classic.lr_g == 4e-4
    assert c.lr_d == 2 * c.lr_g == 8e-4 and classic.lr_d == classic.lr_g == 2e-4
    assert c.beta2 == 0.99 and classic.beta2 == 0.999
    assert c.ema_kimg == 5 and classic.ema_kimg == 0 and c.precision == "auto" and c.channels_last
    assert (c.lr_decay, c.lr_decay_start) == ("auto", 0.5) and (classic.lr_decay, classic.lr_decay_start) == ("none", 0)
    assert c.augment_policy(50_000) == [] and c.r1_gamma == 0


def test_diffaugment_auto_augments_fine_tuning_on_a_small_folder_only():
    finetune = TrainConfig(init_from="cifar10-cars")
    assert finetune.diffaugment == "auto" and resolve_config().diffaugment == "auto"
    assert finetune.augment_policy(500) == ["color", "translation", "cutout"]
    assert finetune.augment_policy(SMALL_FOLDER_IMAGES) == ["color", "translation", "cutout"]
    assert finetune.augment_policy(SMALL_FOLDER_IMAGES + 1) == []
    assert TrainConfig().augment_policy(500) == []  # from random weights
    for off in ("none", "", " none "):
        assert TrainConfig(init_from="cifar10-cars", diffaugment=off).validate().augment_policy(500) == []
    assert TrainConfig(diffaugment="translation").validate().augment_policy(50_000) == ["translation"]


def test_the_dataclass_defaults_are_the_default_preset():
    assert TrainConfig().validate() == resolve_config()
    assert resolve_config("default") == resolve_config("cpu-v1") and resolve_config("default").preset == "cpu-v1"
    assert PRESETS[DEFAULT_PRESET] == {}  # every other preset is a set of differences from the defaults


def test_a_retired_preset_name_selects_nothing_but_a_saved_run_still_resumes():
    with pytest.raises(UserError, match="--preset must be one of cpu-v1, classic, default, not 'modern'"):
        resolve_config("modern")
    saved = {**resolve_config("classic", overrides={"ema_kimg": 5}).to_dict(), "preset": "modern"}
    resumed = resolve_config(file_values=saved, resuming=True)
    assert resumed.preset == "modern" and resumed.ema_kimg == 5 and resumed.batch_size == 128


CHOICE_FLAGS = [  # (field, its list in dcgan.choices, a value that is none of them)
    ("loss", "LOSSES", "lsgan"), ("g_norm", "G_NORMS", "group"), ("d_norm", "D_NORMS", "layer"),
    ("g_output", "G_OUTPUTS", "pixelshuffle"), ("conditional", "CONDITIONINGS", "concat"),
    ("dataset", "DATASETS", "imagenet"), ("lr_decay", "LR_DECAYS", "step"), ("precision", "PRECISIONS", "fp16"),
]


@pytest.mark.parametrize("name, choices, stranger", CHOICE_FLAGS, ids=[c[0] for c in CHOICE_FLAGS])
def test_help_and_validation_read_the_one_list_of_choices(name, choices, stranger):
    """--help names every choice of the flag's list, and validation refuses any other value with a
    message that lists them."""
    import dataclasses

    from dcgan import choices as declared
    from dcgan.config import TrainConfig

    listed = list(getattr(declared, choices))
    help_text = next(f for f in dataclasses.fields(TrainConfig) if f.name == name).metadata["help"]
    assert all(choice in help_text for choice in listed if (name, choice) != ("lr_decay", "auto")), help_text
    flag = "--" + name.replace("_", "-")
    with pytest.raises(UserError, match=f"{flag} must be one of {', '.join(listed)}, not '{stranger}'"):
        resolve_config(overrides={name: stranger}).validate()


def test_each_list_of_choices_is_what_the_code_implements():
    import torch

    from dcgan import augment, choices, data, losses, metrics
    from dcgan.models.dcgan import Discriminator, Generator
    from dcgan.training.precision import resolve_precision
    from dcgan.training.schedule import lr_factor

    assert list(losses.LOSS_FUNCTIONS) == list(choices.LOSSES) and list(LOSSES) == list(choices.LOSSES)
    assert tuple(augment.AUGMENTATIONS) == choices.AUGMENTS == AUGMENTS
    assert (*data.TORCHVISION_CLASSES, "folder") == choices.DATASETS
    assert tuple(metrics.METRICS) == choices.METRIC_NAMES
    z = torch.randn(2, 8)
    for norm in choices.G_NORMS:
        for output in choices.G_OUTPUTS:
            assert Generator(z_dim=8, base_channels=8, norm=norm, output=output)(z).shape == (2, 3, 32, 32)
    for norm in choices.D_NORMS:
        for conditioning in choices.CONDITIONINGS:
            D = Discriminator(base_channels=8, norm=norm, num_classes=3, conditioning=conditioning)
            assert D(torch.randn(2, 3, 32, 32), torch.tensor([0, 2])).shape[0] == 2
    assert [lr_factor(decay, 0.75, 0.5) for decay in choices.LR_DECAYS[:-1]] == [1.0, 0.5, pytest.approx(0.5)]
    for precision in choices.PRECISIONS:
        resolve_precision(precision, torch.device("cpu"))
    with pytest.raises(UserError, match="--log takes tensorboard, wandb"):
        resolve_config(overrides={"log": ["mlflow"]}).validate()


def test_building_the_command_line_parser_leaves_torch_unloaded():
    """`dcgan --help` and a bad flag answer at once: the choice lists load no torch."""
    import subprocess
    import sys

    code = "import sys; from dcgan.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr[-2000:]


def test_file_overrides_preset_and_flags_override_file(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("batch-size: 32\nlr_d: 0.001\npreset: classic\n")
    from dcgan.config import read_config_file

    values = read_config_file(path)
    c = resolve_config(file_values=values, overrides={"lr_d": "0.0005"})
    assert c.preset == "classic" and c.batch_size == 32 and c.lr_d == 0.0005 and c.loss == "bce"


def test_json_config_file(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"classes": ["automobile", "truck"], "hflip": False}))
    from dcgan.config import read_config_file

    c = resolve_config(file_values=read_config_file(path))
    assert c.classes == ["automobile", "truck"] and c.hflip is False


@pytest.mark.parametrize("overrides, message", [
    ({"batch_size": "abc"}, "--batch-size expects int"),
    ({"resolution": 48}, "--resolution must be 32 or 64"),
    ({"loss": "lsgan"}, "--loss must be one of"),
    ({"diffaugment": "color,zoom"}, "unknown: zoom"),
    ({"lr_g": "nan"}, "--lr-g expects float"),
    ({"preset": "fancy"}, "--preset must be one of"),
    ({"n_dis": 0}, "--n-dis must be between 1 and 100"),
    ({"bogus": 1}, "unknown setting 'bogus'"),
    ({"loss": "hinge", "label_smoothing": 0.1}, "--label-smoothing works with --loss bce only"),
    ({"loss": "wgan-gp"}, "--loss wgan-gp needs a critic without BatchNorm"),
])
def test_bad_values_raise_one_clear_error(overrides, message):
    with pytest.raises(UserError, match=message):
        resolve_config(overrides=overrides)


def test_label_smoothing_and_wgan_gp_accepted_where_they_mean_something():
    assert resolve_config(overrides={"loss": "bce", "label_smoothing": 0.1}).label_smoothing == 0.1
    assert resolve_config(overrides={"loss": "wgan-gp", "d_norm": "none"}).loss == "wgan-gp"


def test_every_setting_has_its_help_text_in_the_field_metadata():
    import dataclasses

    from dcgan.commands.train import _field_help
    from dcgan.config import TrainConfig

    for field in dataclasses.fields(TrainConfig):
        text = field.metadata.get("help", "")
        assert text and text != field.name.replace("_", " ") and "\n" not in text, field.name
        assert _field_help(field.name) == text
    assert TrainConfig().classes == [] and TrainConfig().classes is not TrainConfig().classes


def test_the_default_length_comes_from_the_config():
    """`dcgan.train(dcgan.TrainConfig(...))` stops where `dcgan train` does: the default length is
    the config's, recorded like any other setting, and any given length replaces it."""
    from dcgan.config import DEFAULT_EPOCHS, TrainConfig, resolve_config
    from dcgan.training.schedule import Budget

    assert resolve_config().epochs == DEFAULT_EPOCHS
    assert resolve_config(overrides={"kimg": 5}).epochs == 0
    assert resolve_config(overrides={"minutes": 2}).epochs == 0
    assert TrainConfig(kimg=5).epochs == 0 and TrainConfig().epochs == DEFAULT_EPOCHS
    budget = Budget.from_config(TrainConfig(), dataset_size=100, epoch_nimg=64)
    assert budget.total_nimg == DEFAULT_EPOCHS * 100
