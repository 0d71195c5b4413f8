"""The fast feature extractor: it learns CIFAR-10 classes, saves and loads, and finds its test split."""

import pytest
import torch
from PIL import Image

from conftest import cifar_subset
from dcgan.data import ImageData
from dcgan.errors import UserError
from dcgan.metrics.fast import FastExtractor, default_path, labelled_splits, save_fast_extractor, train_fast_classifier


@pytest.mark.slow
def test_training_on_a_cifar10_subset_reaches_40_percent(cifar_root, tmp_path):
    # 500 training images a class, three epochs (about 20 s here); chance is 10%. The full recipe
    # (`dcgan features train`, 50k images, 4 epochs) reaches about 80%.
    train = cifar_subset(cifar_root, "train", 500)
    test = cifar_subset(cifar_root, "test", 100)
    model, report = train_fast_classifier(train, test, epochs=3, progress=False)
    print(f"fast extractor test accuracy on 1,000 CIFAR-10 test images: {report['test_accuracy']:.1%}")
    assert report["test_accuracy"] >= 0.40
    assert report["train_images"] == 5000 and report["test_images"] == 1000

    path = tmp_path / "fast.safetensors"
    save_fast_extractor(model, path, resolution=32, class_names=train.class_names,
                        trained_on={"dataset": "folder", "root": str(cifar_root), "resolution": 32, "channels": 3},
                        report=report)
    extractor = FastExtractor(path)
    assert extractor.accuracy == report["test_accuracy"]
    features, logits = extractor(test.images[:300])
    assert features.shape == (300, 256) and logits.shape == (300, 10)
    agreement = (logits.argmax(1) == test.labels[:300]).float().mean()
    assert agreement >= 0.35  # the reloaded extractor is the trained classifier
    assert "not Inception" in extractor.summary() and "test accuracy" in extractor.summary()


def test_a_folder_of_a_few_dozen_images_trains_an_extractor():
    # 40 images are one batch: four epochs would be four steps, too few for the one-cycle schedule.
    generator = torch.Generator().manual_seed(0)
    tiny = ImageData(torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=generator),
                     torch.arange(40) % 2, ["a", "b"])
    model, report = train_fast_classifier(tiny, tiny, epochs=4, progress=False)
    assert report["steps"] >= 5 and report["batch_size"] == 40
    assert 0.0 <= report["test_accuracy"] <= 1.0


def test_other_resolutions_are_resized_and_other_channel_counts_refused(fast_extractor_file, cars):
    extractor = FastExtractor(fast_extractor_file)
    big = torch.nn.functional.interpolate(cars.images[:8].float(), size=64, mode="nearest").to(torch.uint8)
    features_big, _ = extractor(big)
    features, _ = extractor(cars.images[:8])
    torch.testing.assert_close(features_big, features, rtol=0.05, atol=0.05 * float(features.abs().max()))
    with pytest.raises(UserError, match="takes 3-channel images"):
        extractor(cars.images[:2, :1])


def test_a_file_that_is_not_an_extractor_is_refused(tmp_path, cifar_root):
    with pytest.raises(UserError, match="dcgan features train"):
        FastExtractor(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        FastExtractor(tmp_path / "junk.safetensors")


def write_folder(root, classes, count=20):
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (32, 32), (i * 10, 50, 100)).save(root / name / f"{i}.png")


def test_the_test_split_is_found_beside_the_training_split(tmp_path):
    write_folder(tmp_path / "data" / "train", ["a", "b"])
    write_folder(tmp_path / "data" / "test", ["a", "b"], count=5)
    for root in (tmp_path / "data", tmp_path / "data" / "train"):
        train, test, name = labelled_splits("folder", str(root))
        assert (len(train), len(test)) == (40, 10) and "test split" in name
    assert default_path("folder", str(tmp_path / "data")) == default_path("folder", str(tmp_path / "data" / "train"))


def test_without_a_test_split_a_tenth_is_held_out(tmp_path):
    write_folder(tmp_path / "flat", ["a", "b"])
    train, test, name = labelled_splits("folder", str(tmp_path / "flat"))
    assert (len(train), len(test)) == (36, 4) and "held out" in name


def test_one_class_cannot_teach_a_classifier(tmp_path):
    write_folder(tmp_path / "cats", ["cat"])
    with pytest.raises(UserError, match="holds one class"):
        labelled_splits("folder", str(tmp_path / "cats"))
    with pytest.raises(UserError, match="celeba has no class labels"):
        labelled_splits("celeba", str(tmp_path))
