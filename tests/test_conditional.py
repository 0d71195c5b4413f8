"""Class-conditional GANs (projection and AC-GAN): label plumbing, the AC-GAN loss, learning on real
CIFAR-10 classes, exact resume, and asking for a class from `dcgan generate`, the server and
`dcgan evaluate`."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dcgan.checkpoint import load_checkpoint, load_generator
from dcgan.cli import main
from dcgan.config import resolve_config
from dcgan.data import ImageData, load_dataset
from dcgan.errors import UserError
from dcgan.losses import GANLoss, ac_loss
from dcgan.metrics.frechet import pixel_frechet_distance
from dcgan.models import build_discriminator, build_generator
from dcgan.sampling import generate_images, interpolate, labels_from_seeds
from dcgan.training.loop import fixed_grid_inputs, train
from dcgan.training.state import state_tensors
from test_train import small_config

TWO_CLASSES = ["airplane", "frog"]  # far apart in colour: sky against green and brown


@pytest.fixture(scope="module")
def two_classes(cifar_root, tmp_path_factory) -> ImageData:
    """The first 200 training images of the airplane and frog classes (only those files decoded)."""
    subset = tmp_path_factory.mktemp("two-classes")
    for name in TWO_CLASSES:
        (subset / name).mkdir()
        for path in sorted((cifar_root / "train" / name).iterdir())[:200]:
            (subset / name / path.name).symlink_to(path)
    return load_dataset("folder", subset)


@pytest.fixture(scope="module")
def two_class_classifier(two_classes):
    """The fast extractor's network trained on the real airplanes and frogs (a few seconds)."""
    from dcgan.metrics.fast import train_fast_classifier

    model, _ = train_fast_classifier(two_classes, two_classes, epochs=10, batch_size=64, progress=False)
    return model


def conditional_config(tmp_path, mode, **overrides):
    values = dict(conditional=mode, classes=[], g_channels=16, d_channels=16, batch_size=32, log_every=10)
    values.update(overrides)
    return small_config(tmp_path, **values)


# ------------------------------------------------------------------ networks and losses

@pytest.mark.parametrize("conditioning", ["projection", "acgan"])
def test_conditional_networks_take_labels_and_give_the_right_shapes(conditioning):
    G = build_generator(z_dim=16, base_channels=8, num_classes=3, class_names=["a", "b", "c"])
    D = build_discriminator(base_channels=8, num_classes=3, conditioning=conditioning)
    z, c = torch.randn(5, 16), torch.tensor([0, 1, 2, 1, 0])
    images = G(z, c)
    assert images.shape == (5, 3, 32, 32) and G.class_names == ["a", "b", "c"]
    with pytest.raises(ValueError, match="pass class labels"):
        G(z)
    # One-hot class weights give exactly the labels' images; mixed weights give something between.
    G.eval()
    assert torch.allclose(G(z, F.one_hot(c, 3).float()), G(z, c), atol=1e-6)
    if conditioning == "projection":
        logits = D(images, c)
        assert logits.shape == (5,)
        assert not torch.allclose(D(images, c), D(images, (c + 1) % 3))  # the label enters the logit
        with pytest.raises(ValueError, match="pass class labels"):
            D(images)
    else:
        logits, classes = D(images, return_classes=True)
        assert logits.shape == (5,) and classes.shape == (5, 3)
        assert torch.equal(D(images), logits)  # the class head leaves the real/fake logit alone
    with pytest.raises(ValueError, match="class names for"):
        build_generator(num_classes=2, class_names=["only one"])


def test_ac_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    labels = torch.tensor([0, 1])
    by_hand = (-math.log(math.exp(2) / (math.exp(2) + 2)) - math.log(math.e / (1 + math.e + math.exp(3)))) / 2
    assert ac_loss(logits, labels).item() == pytest.approx(by_hand, rel=1e-6)


def test_acgan_objective_adds_the_class_cross_entropy_on_real_and_fake_images():
    torch.manual_seed(0)
    D = build_discriminator(base_channels=8, num_classes=4, conditioning="acgan", norm="none")
    loss = GANLoss(generator=None, discriminator=D, loss="bce", conditioning="acgan", ac_weight=0.5)
    real, fake = torch.rand(6, 3, 32, 32) * 2 - 1, torch.rand(6, 3, 32, 32) * 2 - 1
    real_labels, fake_labels = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([3, 2, 1, 0, 3, 2])
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    stats = loss.discriminator_step(real, fake, 1, scaler, real_labels, fake_labels)
    grads = [p.grad.clone() for p in D.parameters()]

    D.zero_grad()
    real_logits, real_classes = D(real, return_classes=True)
    fake_logits, fake_classes = D(fake, return_classes=True)
    adversarial = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    classification = F.cross_entropy(real_classes, real_labels) + F.cross_entropy(fake_classes, fake_labels)
    (adversarial + 0.5 * classification).backward()
    assert stats["loss_d"].item() == pytest.approx(adversarial.item(), rel=1e-5)
    assert stats["ac_d"].item() == pytest.approx(classification.item(), rel=1e-5)
    expected_accuracy = (real_classes.argmax(1) == real_labels).float().mean().item()
    assert stats["ac_accuracy"].item() == pytest.approx(expected_accuracy)
    for got, want in zip(grads, [p.grad for p in D.parameters()]):
        assert torch.allclose(got, want, atol=1e-6)

    # G: the non-saturating loss plus the class loss of its fakes.
    D.zero_grad()
    fake_g = fake.clone().requires_grad_(True)
    stats = loss.generator_step(fake_g, scaler, fake_labels=fake_labels)
    logits, classes = D(fake, return_classes=True)
    assert stats["ac_g"].item() == pytest.approx(F.cross_entropy(classes, fake_labels).item(), rel=1e-5)
    assert stats["loss_g"].item() == pytest.approx(F.softplus(-logits).mean().item(), rel=1e-5)


def test_labels_from_seeds_depend_on_the_seed_alone_and_follow_the_weights():
    assert torch.equal(labels_from_seeds(range(5, 10), 10), labels_from_seeds([5, 6, 7, 8, 9], 10))
    assert labels_from_seeds([7], 10) == labels_from_seeds(range(100), 10)[7]
    uniform = labels_from_seeds(range(3000), 3)
    assert all(900 < int((uniform == k).sum()) < 1100 for k in range(3))
    skewed = labels_from_seeds(range(3000), 3, weights=torch.tensor([0.0, 1.0, 3.0]))
    assert int((skewed == 0).sum()) == 0 and 2000 < int((skewed == 2).sum()) < 2500


def test_fixed_grid_has_a_row_per_class_with_the_same_noise_down_each_column():
    z, labels, columns = fixed_grid_inputs(64, 8, 3)
    assert columns == 21 and labels.tolist() == [0] * 21 + [1] * 21 + [2] * 21
    assert torch.equal(z[:21], z[21:42])
    z, labels, columns = fixed_grid_inputs(64, 8, 100)  # ten rows spread over 100 classes
    assert columns == 6 and labels.unique().tolist() == [0, 11, 22, 33, 44, 55, 66, 77, 88, 99]
    z, labels, columns = fixed_grid_inputs(64, 8, 0)
    assert labels is None and z.shape == (64, 8) and columns == 8


# ------------------------------------------------------------------ training

@pytest.mark.parametrize("mode", ["projection", "acgan"])
def test_a_short_conditional_run_makes_each_class_look_like_its_own_images(tmp_path, two_classes, mode,
                                                                          two_class_classifier):
    run = train(conditional_config(tmp_path, mode, kimg=6.4, seed=0), data=two_classes, show_progress=False)
    G, kwargs = load_generator(run)
    assert kwargs["class_names"] == TWO_CLASSES and kwargs["num_classes"] == 2
    planes, frogs = (generate_images(G, range(200), classes=k) for k in (0, 1))
    real_planes, real_frogs = (two_classes.images[two_classes.labels == k] for k in (0, 1))
    # Each class's samples are closer (pooled-pixel Fréchet distance) to that class's images than to the other's.
    assert pixel_frechet_distance(planes, real_planes) < 0.7 * pixel_frechet_distance(planes, real_frogs)
    assert pixel_frechet_distance(frogs, real_frogs) < 0.7 * pixel_frechet_distance(frogs, real_planes)
    # And a classifier trained on the real images names the asked class far above chance (50%).
    from dcgan.metrics.fast import accuracy

    asked = ImageData(torch.cat([planes, frogs]), torch.tensor([0] * 200 + [1] * 200), TWO_CLASSES)
    assert accuracy(two_class_classifier, asked, torch.device("cpu")) > 0.75
    # The class names travel with the run: model.json, the checkpoint, the generator file.
    assert json.loads((run / "model.json").read_text())["generator_kwargs"]["class_names"] == TWO_CLASSES
    assert load_checkpoint(run / "checkpoint-last.pt")["generator_kwargs"]["class_names"] == TWO_CLASSES
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    if mode == "acgan":  # D learns to tell the classes apart
        assert float(rows[-1]["ac_accuracy"]) > 0.8 and float(rows[-1]["ac_g"]) > 0
    else:
        assert rows[-1]["ac_d"] == ""


def test_a_conditional_grid_has_a_row_per_class(tmp_path, two_classes):
    run = train(conditional_config(tmp_path, "projection", kimg=0.064, grid_size=16), data=two_classes,
                show_progress=False)
    from PIL import Image

    grid = Image.open(next((run / "samples").glob("fakes*.png")))
    assert grid.size == (2 + 8 * 34, 2 + 2 * 34)  # 8 columns, 2 rows of 32-pixel images with 2-pixel gaps
    assert Image.open(run / "real_vs_fake.png").height == 2 + 2 * 34 + 16


@pytest.mark.parametrize("mode, extra", [("acgan", {}),
                                         ("projection", dict(d_norm="none", spectral_norm=True, loss="hinge",
                                                             r1_gamma=0.1, diffaugment="color,translation"))])
def test_conditional_resume_is_exact(tmp_path, two_classes, mode, extra):
    kimg = 20 * 32 / 1000
    straight = train(conditional_config(tmp_path / "a", mode, kimg=kimg, **extra), data=two_classes,
                     show_progress=False)
    half = train(conditional_config(tmp_path / "b", mode, kimg=kimg / 2, **extra), data=two_classes,
                 show_progress=False)
    resumed = train(conditional_config(tmp_path / "b", mode, kimg=kimg, **extra), data=two_classes, run_dir=half,
                    resume_state=load_checkpoint(half / "checkpoint-last.pt"), show_progress=False)
    a = state_tensors(load_checkpoint(straight / "checkpoint-last.pt"))
    b = state_tensors(load_checkpoint(resumed / "checkpoint-last.pt"))
    assert a.keys() == b.keys() and any("embed" in key for key in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_conditional_training_needs_two_classes(tmp_path, cars):
    one_class = ImageData(cars.images[:64], cars.labels[:64], cars.class_names)
    with pytest.raises(UserError, match="at least two classes"):
        train(small_config(tmp_path, conditional="acgan", kimg=0.032), data=one_class, show_progress=False)
    with pytest.raises(UserError, match="--conditional must be one of projection, acgan"):
        resolve_config("cpu-v1", overrides={"conditional": "yes"})


# ------------------------------------------------------------------ generate, serve, evaluate

@pytest.fixture(scope="module")
def conditional_run(two_classes, tmp_path_factory, fast_extractor_file) -> Path:
    """A short AC-GAN run on airplanes and frogs, tracking FID-fast (of images of both classes)."""
    config = conditional_config(tmp_path_factory.mktemp("conditional-run"), "acgan", kimg=0.32, seed=1,
                                metric="fid-fast", metric_every="0.16kimg", metric_samples=64,
                                fast_extractor=str(fast_extractor_file))
    return train(config, data=two_classes, show_progress=False)


def test_a_conditional_run_tracks_its_overall_score(conditional_run, two_classes, fast_extractor_file):
    from dcgan.metrics.evaluate import generated_features
    from dcgan.metrics.fast import FastExtractor
    from dcgan.metrics.frechet import frechet_distance
    from dcgan.metrics.reference import RealSource, reference_features

    with open(conditional_run / "metrics.csv") as handle:
        scores = [float(row["fid_fast"]) for row in csv.DictReader(handle) if row["fid_fast"]]
    assert len(scores) == 2
    # The last score is that of 64 images whose classes their seeds draw, against both classes' images.
    extractor = FastExtractor(fast_extractor_file)
    generator, _ = load_generator(conditional_run / "generator.safetensors")
    reference = reference_features(extractor, RealSource("folder", "data"), two_classes, progress=False)
    again = generated_features(generator, extractor, 64, progress=False)
    assert frechet_distance(again.mu, again.sigma, reference.mu, reference.sigma) == pytest.approx(scores[-1], rel=1e-4)
    assert set(labels_from_seeds(range(64), 2).tolist()) == {0, 1}


def test_generate_by_class_name_index_and_all(tmp_path, conditional_run, capsys):
    G, _ = load_generator(conditional_run)
    frogs = generate_images(G, range(3, 7), classes=1)
    assert main(["generate", "--checkpoint", str(conditional_run), "--class", "frog", "--num", "4", "--seed", "3",
                 "--outdir", str(tmp_path / "frogs")]) == 0
    files = sorted((tmp_path / "frogs").glob("*.png"))  # and the folder's record of what dcgan wrote
    assert [f.name for f in files] == [f"seed00000{s}-frog.png" for s in range(3, 7)]
    from PIL import Image

    assert all(torch.equal(torch.from_numpy(__import__("numpy").array(Image.open(f))).permute(2, 0, 1), frogs[i])
               for i, f in enumerate(files))  # image i depends only on its seed and class
    # An index names the same class; "all" gives a grid with a row per class.
    assert main(["generate", "--checkpoint", str(conditional_run), "--class", "1", "--num", "4", "--seed", "3",
                 "--outdir", str(tmp_path / "by-index")]) == 0
    assert [f.read_bytes() for f in sorted((tmp_path / "by-index").glob("*.png"))] == [f.read_bytes() for f in files]
    assert main(["generate", "--checkpoint", str(conditional_run), "--class", "all", "--num", "3",
                 "--out", str(tmp_path / "all.png")]) == 0
    assert Image.open(tmp_path / "all.png").size == (2 + 3 * 34, 2 + 2 * 34)
    assert "airplane, frog" in capsys.readouterr().out


def test_bad_classes_get_one_line_naming_the_valid_ones(tmp_path, conditional_run, cars, capsys):
    assert main(["generate", "--checkpoint", str(conditional_run), "--class", "horse"]) == 2
    assert capsys.readouterr().err.strip().endswith("unknown class 'horse'; valid classes: airplane, frog "
                                                    "(or indices 0-1, or all)")
    plain = train(small_config(tmp_path, kimg=0.032), data=ImageData(cars.images[:32], cars.labels[:32],
                                                                      cars.class_names), show_progress=False)
    assert main(["generate", "--checkpoint", str(plain), "--class", "frog"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not class-conditional" in err and len(err.splitlines()) == 1


def test_interpolation_walks_from_class_to_class_at_one_seed(conditional_run):
    G, _ = load_generator(conditional_run)
    strip = interpolate(G, 5, 5, 4, class_from=0, class_to=1)
    assert torch.equal(strip[0], generate_images(G, [5], classes=0)[0])
    assert torch.equal(strip[-1], generate_images(G, [5], classes=1)[0])
    assert not torch.equal(strip[1], strip[0]) and not torch.equal(strip[1], strip[-1])


def test_server_takes_a_class(conditional_run):
    from dcgan.server import create_app

    client = create_app([str(conditional_run)]).test_client()
    described = client.get("/api/models").get_json()["models"][0]
    assert described["conditional"] and described["classes"] == TWO_CLASSES
    planes = client.get("/api/generate?class=airplane&seed=3&num=2&format=json").get_json()
    frogs = client.get("/api/generate?class=1&seed=3&num=2&format=json").get_json()
    assert planes["class"] == "airplane" and frogs["class"] == "frog" and planes["images"] != frogs["images"]
    again = client.get("/api/generate?class=frog&seed=3&num=2&format=json").get_json()
    assert again["images"] == frogs["images"]
    response = client.get("/api/generate?class=horse")
    assert response.status_code == 400 and "valid classes: airplane, frog" in response.get_json()["error"]
    assert client.get("/api/interpolate?from=1&to=1&class=airplane&to_class=frog&steps=3").status_code == 200
    assert client.get("/api/interpolate?from=1&to=2&to_class=frog").status_code == 400
    page = client.get("/?class=frog&seed=3&num=2").get_data(as_text=True)
    assert '<select name="class"' in page and '<option value="frog" selected>' in page


def test_evaluate_scores_each_class_and_the_class_accuracy(tmp_path, conditional_run, cifar_root, fast_extractor_file,
                                                           capsys):
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--checkpoint", str(conditional_run), "--features", "fast", "--metrics", "fid,kid",
                 "--fast-extractor", str(fast_extractor_file), "--ref", str(cifar_root / "test"),
                 "--classes", "airplane,frog", "--num-gen", "100", "--kid-subset-size", "50",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "class accuracy" in printed and "frog" in printed
    record = json.loads(out.read_text())["evaluations"][0]
    scores = record["scores"]
    assert set(scores["per_class"]) == set(TWO_CLASSES)
    for entry in scores["per_class"].values():
        assert entry["num_images"] == 50 and entry["reference_images"] == 1000 and entry["fid_fast"] > 0
        assert 0 <= entry["accuracy"] <= 1
    # Class accuracy recounted here: the extractor's classifier on each class's generated images.
    from dcgan.metrics.fast import FastExtractor

    extractor, G = FastExtractor(fast_extractor_file), load_generator(conditional_run)[0]
    hits = sum(int((extractor(generate_images(G, range(50), classes=k))[1].argmax(1)
                    == extractor.class_names.index(name)).sum()) for k, name in enumerate(TWO_CLASSES))
    assert scores["class_accuracy"] == pytest.approx(hits / 100)
    assert record["protocol"]["generated"]["classes"] == TWO_CLASSES
