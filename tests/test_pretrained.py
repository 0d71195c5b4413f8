"""The generators shipped with the package, their cards, `--model`, and `dcgan export`."""

import json
import sys

import pytest
import torch

from dcgan.checkpoint import load_generator
from dcgan.cli import main
from dcgan.errors import UserError
from dcgan.pretrained import model_file, shipped_model, shipped_models, trained_models
from dcgan.sampling import generate_images


def test_every_shipped_model_has_a_card_and_the_trained_ones_generate_deterministic_images():
    models = shipped_models()
    assert {"cifar10-cars", "cifar10", "mnist", "fashion-mnist", "cifar100", "celeba"} <= set(models)
    for model in models.values():
        assert model.card_path.is_file() and model.card["command"].startswith("dcgan train")
        assert model.name in model.card_path.read_text()
    trained = trained_models()
    assert [model.name for model in trained][:2] == ["cifar10-cars", "cifar10"]  # `dcgan serve` opens on the cars
    for model in trained:
        generator, kwargs = load_generator(model.file)
        assert kwargs["img_resolution"] == model.card["resolution"]
        assert model.card["scores"]["fid_fast"] > 0 and model.card["scores"]["protocol"]
        a = generate_images(generator, range(5, 13))
        b = torch.cat([generate_images(generator, [seed]) for seed in range(5, 13)])
        assert torch.equal(a, b) and a.float().std() > 20  # the same images alone or in a batch, and not flat
        again, _ = load_generator(model.file)
        assert torch.equal(generate_images(again, range(5, 13)), a)


def test_shipped_weights_are_small_float16():
    from safetensors import safe_open

    path = model_file("cifar10-cars")
    with safe_open(str(path), framework="pt") as handle:
        dtypes = {handle.get_tensor(key).dtype for key in handle.keys()}
    assert torch.float16 in dtypes and path.stat().st_size < 3_000_000


def test_unknown_and_untrained_models_say_what_to_do(capsys):
    with pytest.raises(UserError, match="unknown model 'horses'; shipped models: .*cifar10-cars"):
        shipped_model("horses")
    assert main(["generate", "--model", "mnist"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train it yourself: dcgan train --dataset mnist" in err
    assert main(["generate", "--model", "cifar10-cars", "--checkpoint", "x"]) == 2
    assert "not both" in capsys.readouterr().err


def test_models_command_lists_and_shows_cards(capsys):
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert "cifar10-cars" in table and "shipped" in table and "train it yourself: dcgan train --dataset celeba" in table
    assert f"card: {shipped_model('cifar10-cars').card_path}" in table
    assert main(["models", "cifar10-cars"]) == 0
    card = capsys.readouterr().out
    assert "# cifar10-cars" in card and "Known limits" in card and "generator.safetensors" in card
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    cars = next(row for row in rows if row["name"] == "cifar10-cars")
    card_scores = shipped_model("cifar10-cars").card["scores"]
    assert cars["trained"] and cars["size_bytes"] > 0
    assert cars["fid_fast"] == card_scores["fid_fast"] and cars["fid"] == card_scores["inception"]["fid"] is not None


def test_generate_with_a_model_name(tmp_path, capsys):
    assert main(["generate", "--model", "cifar10-cars", "--num", "4", "--outdir", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("seed*.png"))) == 4


def test_serve_with_no_arguments_serves_the_shipped_models():
    from dcgan.server import create_app

    client = create_app([], shipped=[model.name for model in trained_models()]).test_client()
    models = client.get("/api/models").get_json()["models"]
    cars = next(model for model in models if model["name"] == "cifar10-cars")
    assert cars["card"] == "/models/cifar10-cars" and "CPU" in cars["description"]
    assert client.get("/api/generate?model=cifar10-cars&seed=1&num=2").status_code == 200
    page = client.get("/models/cifar10-cars").get_data(as_text=True)
    card = shipped_model("cifar10-cars").card
    inception_fid = card["scores"]["inception"]["fid"]
    assert f"**{inception_fid}**" in page and "Known limits" in page  # the card's figure, from its MODEL_CARD.md
    assert client.get("/models/cifar10-cars/samples.png").status_code == 200
    assert client.get("/models/nothing").status_code == 404


# ------------------------------------------------------------------ export

@pytest.fixture(scope="module")
def conditional_generator_file(tmp_path_factory):
    from dcgan.checkpoint import save_generator
    from dcgan.models import build_generator

    kwargs = dict(z_dim=16, base_channels=8, num_classes=3, class_names=["a", "b", "c"])
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("conditional") / "generator.safetensors"
    save_generator(build_generator(**kwargs).eval(), kwargs, path)
    return path


@pytest.mark.parametrize("source", ["shipped", "conditional"])
@pytest.mark.parametrize("batch", [0, 4])
def test_onnx_export_matches_pytorch_within_one_level(tmp_path, source, batch, conditional_generator_file, capsys):
    onnxruntime = pytest.importorskip("onnxruntime")
    from dcgan.export import ImageGenerator, example_inputs

    where = ["--model", "cifar10-cars"] if source == "shipped" else ["--checkpoint", str(conditional_generator_file)]
    out = tmp_path / "generator.onnx"
    assert main(["export", *where, "--format", "onnx", "--out", str(out), "--batch", str(batch)]) == 0
    assert "differ from PyTorch's by at most" in capsys.readouterr().out
    generator, _ = load_generator(model_file("cifar10-cars") if source == "shipped" else conditional_generator_file)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for size in ([3, 8] if batch == 0 else [4]):  # a dynamic batch takes any size
        inputs = example_inputs(generator, size)
        names = [i.name for i in session.get_inputs()]
        (images,) = session.run(["images"], dict(zip(names, (t.numpy() for t in inputs))))
        expected = ImageGenerator(generator)(*inputs)
        assert images.dtype.name == "uint8" and images.shape == tuple(expected.shape)
        assert (torch.from_numpy(images).int() - expected.int()).abs().max() <= 1
    if source == "conditional":  # the labels input, and the class names it indexes in the file's metadata
        import onnx

        assert names == ["z", "labels"]
        metadata = {prop.key: prop.value for prop in onnx.load(str(out)).metadata_props}
        assert json.loads(metadata["dcgan.generator_kwargs"])["class_names"] == ["a", "b", "c"]
    # What `dcgan generate` makes from the same seeds.
    if source == "shipped":
        exported = ImageGenerator(generator)(*example_inputs(generator, 4))
        assert torch.equal(exported, generate_images(generator, range(4)))


def test_torchscript_export_matches_pytorch(tmp_path, conditional_generator_file):
    out = tmp_path / "generator.pt"
    assert main(["export", "--checkpoint", str(conditional_generator_file), "--format", "torchscript",
                 "--out", str(out)]) == 0
    from dcgan.export import example_inputs

    extra = {"dcgan.json": ""}
    scripted = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(json.loads(extra["dcgan.json"])["dcgan.generator_kwargs"])["num_classes"] == 3
    generator, _ = load_generator(conditional_generator_file)
    for size in (2, 5):
        z, labels = example_inputs(generator, size)
        assert torch.equal(scripted(z, labels), generate_images(generator, range(size), classes=labels.tolist()))


@pytest.mark.parametrize("source", ["shipped", "conditional"])
def test_pt2_export_is_exact_at_any_batch_and_warns_nothing(tmp_path, source, conditional_generator_file, capsys):
    import warnings

    from dcgan.export import example_inputs

    where = ["--model", "cifar10-cars"] if source == "shipped" else ["--checkpoint", str(conditional_generator_file)]
    out = tmp_path / "generator.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.jit's deprecation notice would fail here; torch.export has none
        assert main(["export", *where, "--format", "pt2", "--out", str(out)]) == 0
        extra = {"dcgan.json": ""}
        program = torch.export.load(str(out), extra_files=extra).module()
    assert "torch.export ExportedProgram" in capsys.readouterr().out
    path = model_file("cifar10-cars") if source == "shipped" else conditional_generator_file
    generator, kwargs = load_generator(path)
    assert json.loads(json.loads(extra["dcgan.json"])["dcgan.generator_kwargs"]) == kwargs
    for size in (1, 3, 9):
        inputs = example_inputs(generator, size)
        classes = inputs[1].tolist() if source == "conditional" else None
        assert torch.equal(program(*inputs), generate_images(generator, range(size), classes=classes))


def test_export_without_onnx_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now fails
    assert main(["export", "--model", "cifar10-cars", "--format", "onnx", "--out", str(tmp_path / "g.onnx")]) == 2
    assert 'pip install "dcgan[export]"' in capsys.readouterr().err
    assert not (tmp_path / "g.onnx").exists()


def test_torchscript_takes_any_batch_so_a_fixed_one_is_refused(tmp_path, capsys):
    out = tmp_path / "g.pt"
    command = ["export", "--model", "cifar10-cars", "--format", "torchscript", "--out", str(out), "--batch", "4"]
    assert main(command) == 2
    assert "TorchScript file takes any batch" in capsys.readouterr().err and not out.exists()


def test_evaluate_a_shipped_model_without_ref_says_which_ref(capsys):
    assert main(["evaluate", "--model", "cifar10-cars", "--features", "fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pass --ref" in err and "--ref cifar10-test" in err


def test_the_conditional_shipped_model_makes_the_class_asked_for(tmp_path):
    model = shipped_model("cifar10")
    generator, kwargs = load_generator(model.file)
    assert kwargs["class_names"] == model.card["classes"] and len(model.card["classes"]) == 10
    assert 0 < model.card["scores"]["class_accuracy"] < 1
    horses = generate_images(generator, range(4), classes=model.card["classes"].index("horse"))
    ships = generate_images(generator, range(4), classes=model.card["classes"].index("ship"))
    assert not torch.equal(horses, ships)  # the same seeds, another class: other images
    command = ["generate", "--model", "cifar10", "--class", "horse,ship", "--num", "2", "--outdir", str(tmp_path)]
    assert main(command) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["seed000000-horse.png", "seed000000-ship.png",
                                                              "seed000001-horse.png", "seed000001-ship.png"]


def test_the_conditional_shipped_model_carries_its_discriminator_for_fine_tuning():
    from dcgan.checkpoint import load_state_checked
    from dcgan.models import build_discriminator
    from dcgan.training.init_from import read_source

    source = read_source("cifar10")  # what `--init-from cifar10` reads
    assert source.D is not None
    discriminator = build_discriminator(**source.d_kwargs)
    load_state_checked(discriminator, source.D, "the shipped cifar10 discriminator")
    generator, _ = load_generator(shipped_model("cifar10").file)
    labels = torch.arange(10)
    with torch.no_grad():
        images = generator(torch.randn(10, generator.z_dim), labels)
        scores = discriminator(images, labels)
    assert scores.shape[0] == 10 and torch.isfinite(scores).all()
