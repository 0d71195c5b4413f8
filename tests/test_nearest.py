"""The memorization check (`dcgan evaluate --nearest`, `dcgan.nearest`): copies are caught, new
images are not, the grid and the record say what was compared."""

import json

import pytest
import torch
from PIL import Image

import dcgan
from dcgan.metrics.nearest import check_memorization, nearest_training, pixels
from dcgan.metrics.reference import parse_reference
from test_cli import assert_one_line_error, dcgan_here
from test_cli import dcgan as run_dcgan


def noise_images(count: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (count, 3, 8, 8), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_nearest_training_matches_brute_force(monkeypatch):
    import dcgan.metrics.nearest as nearest

    monkeypatch.setattr(nearest, "TRAINING_CHUNK", 128)  # several training blocks, merged
    queries, training, mirror = torch.randn(700, 12), torch.randn(300, 12), torch.randn(300, 12)
    found = nearest_training([queries], [training, mirror], k=3)
    both = torch.stack([torch.cdist(queries, training), torch.cdist(queries, mirror)])  # (2, N, M)
    per_image, which = both.min(0)  # one distance per training row: the nearer orientation
    expected = per_image.sort(dim=1)
    assert torch.equal(found.indices, expected.indices[:, :3])
    assert torch.allclose(found.distances, expected.values[:, :3], atol=1e-5)
    assert torch.equal(found.mirrored, which.gather(1, expected.indices[:, :3]).bool())


def test_copies_score_one_and_new_images_score_about_one_percent():
    training, test, fresh = noise_images(2000, 0), noise_images(1000, 1), noise_images(1000, 2)
    copies = training[torch.arange(0, 2000, 2)]  # 1,000 training images, exactly
    copied = check_memorization(copies, pixels(copies), training, pixels(training), test, pixels(test), k=2)
    new = check_memorization(fresh, pixels(fresh), training, pixels(training), test, pixels(test), k=2)
    for space in ("nearest_features", "nearest_pixels"):
        for share in ("share_closer", "share_ratio"):
            assert copied.scores()[space][share] == 1.0
            assert new.scores()[space][share] < 0.05
    assert copied.features.neighbours.indices[:, 0].tolist() == list(range(0, 2000, 2))  # each copy its original
    assert copied.pixels.generated_median == 0.0 and new.pixels.generated_median > 0.9 * new.pixels.test_median

    # Half copies, half new: the share says so.
    mixed = torch.cat([copies[:500], fresh[:500]])
    half = check_memorization(mixed, pixels(mixed), training, pixels(training), test, pixels(test), k=2)
    assert 0.5 <= half.pixels.share_closer < 0.55 and 0.5 <= half.pixels.share_ratio < 0.55
    images, per_row = half.grid_images(rows=4)
    assert per_row == 6 and images.shape == (24, 3, 8, 8)
    suspects = half.suspects(rows=4)
    assert torch.equal(images[0], mixed[suspects[0]]) and (suspects < 500).all()  # copies come first
    assert torch.equal(images[1], training[half.features.neighbours.indices[suspects[0], 0]])


@pytest.fixture(scope="module")
def car_folders(tmp_path_factory, cifar_root):
    """200 training and 100 test car images as image folders."""
    root = tmp_path_factory.mktemp("near")
    for split, count in (("train", 200), ("test", 100), ("few", 20)):
        (root / split / "automobile").mkdir(parents=True)
        source = cifar_root / ("test" if split == "few" else split) / "automobile"
        for path in sorted(source.iterdir())[:count]:
            (root / split / "automobile" / path.name).symlink_to(path)
    return root


def test_a_flat_image_is_near_everything_but_a_copy_of_nothing():
    training, test = noise_images(1000, 0), noise_images(500, 1)
    flat = torch.full((100, 3, 8, 8), 128, dtype=torch.uint8)
    result = check_memorization(flat, pixels(flat), training, pixels(training), test, pixels(test))
    assert result.pixels.share_closer == 1.0  # the distance bar alone calls it copying
    assert result.pixels.share_ratio == 0.0  # the ratio does not


def test_a_copy_of_a_symmetric_image_counts_once_and_is_caught_by_the_ratio():
    training = noise_images(1000, 0)
    training[:50] = torch.cat([training[:50, :, :, :4], training[:50, :, :, :4].flip(-1)], dim=-1)  # symmetric
    test = noise_images(500, 1)
    copies = training[:50]  # its mirror image is itself: the second nearest must be another image
    result = check_memorization(copies, pixels(copies), training, pixels(training), test, pixels(test),
                                mirror_features=pixels(training.flip(-1)))
    assert result.pixels.share_ratio == 1.0 and result.features.share_ratio == 1.0
    assert (result.pixels.neighbours.indices[:, 0] != result.pixels.neighbours.indices[:, 1]).all()


def test_api_catches_a_set_of_training_images(car_folders, untrained_fast_extractor):
    training = parse_reference(str(car_folders / "train")).load()
    copies = training.images[:64]
    result = dcgan.nearest(copies, car_folders / "train", car_folders / "test",
                           fast_extractor=str(untrained_fast_extractor), num_gen=100)
    for space in ("nearest_features", "nearest_pixels"):
        assert result.scores()[space]["share_closer"] == 1.0 and result.scores()[space]["share_ratio"] == 1.0
    protocol = result.record["protocol"]
    assert protocol["reference"]["num_images"] == 200 and protocol["nearest"]["test"]["num_images"] == 100
    assert protocol["generated"] == {"kind": "images", "num_images": 64}

    # Mirrored copies are copies: found among the training images' mirror images, unless told not to.
    mirrored = copies.flip(-1)
    found = dcgan.nearest(mirrored, car_folders / "train", car_folders / "test",
                          fast_extractor=str(untrained_fast_extractor), num_gen=100)
    assert found.scores()["nearest_pixels"]["share_closer"] == 1.0
    assert found.pixels.neighbours.mirrored[:, 0].all()  # matched as mirror images
    assert found.pixels.neighbours.indices[:, 0].tolist() == list(range(64))  # of their originals
    unmirrored = dcgan.nearest(mirrored, car_folders / "train", car_folders / "test", mirrored=False,
                               fast_extractor=str(untrained_fast_extractor), num_gen=100)
    assert unmirrored.scores()["nearest_pixels"]["share_closer"] < 0.2


def test_cli_writes_the_grid_and_the_record(car_folders, untrained_fast_extractor, tmp_path):
    from dcgan.checkpoint import save_generator
    from dcgan.models import build_generator

    kwargs = dict(z_dim=16, img_resolution=32, img_channels=3, base_channels=8, norm="batch", num_classes=0)
    save_generator(build_generator(**kwargs), kwargs, tmp_path / "g.safetensors")
    code, stdout, stderr = run_dcgan("evaluate", "--nearest", "--checkpoint", tmp_path / "g.safetensors",
                                     "--ref", car_folders / "train", "--features", "fast", "--fast-extractor",
                                     untrained_fast_extractor, "--num-gen", 40, "--nearest-k", 3)
    assert code == 0, stderr
    # An untrained generator's images are flat grey: nearer to everything in pixels, a copy of nothing.
    assert "fast features: 0.0% of generated images are nearer" in stdout
    assert "0.0% by the nearest/second-nearest ratio" in stdout
    grid = Image.open(tmp_path / "g.nearest.png")
    assert grid.size == (8 * 34 + 2, 8 * 34 + 2)  # 8 rows of a sample, 3 + blank + 3 neighbours (32 px, padding 2)
    record = json.loads((tmp_path / "g.metrics.json").read_text())["evaluations"][-1]
    assert set(record["scores"]) == {"nearest_features", "nearest_pixels"}
    assert record["protocol"]["nearest"]["test"]["root"].endswith("test")  # the test folder beside the training one
    assert record["protocol"]["generated"]["seeds"] == "0-39"


def test_the_api_refuses_what_it_cannot_check(car_folders, untrained_fast_extractor):
    options = dict(fast_extractor=str(untrained_fast_extractor))
    with pytest.raises(dcgan.UserError, match="must not be the training images"):
        dcgan.nearest(noise_images(10, 0), car_folders / "train", car_folders / "train", **options)
    with pytest.raises(dcgan.UserError, match="uint8 \\(N, C, H, W\\) tensor"):
        dcgan.nearest(torch.zeros(4, 32, 32, 3), car_folders / "train", car_folders / "test", **options)
    with pytest.raises(dcgan.UserError, match="k .* must be between 1 and 32"):
        dcgan.nearest(noise_images(10, 0), car_folders / "train", car_folders / "test", k=0, **options)
    with pytest.raises(dcgan.UserError, match="at least 100 test images"):
        dcgan.nearest(noise_images(10, 0), car_folders / "test", car_folders / "few", **options)


@pytest.mark.parametrize("args, fragment", [
    (["--grid", "x.png"], "--grid and --nearest-k go with --nearest"),
    (["--nearest", "--metrics", "kid"], "it takes no --metrics"),
    (["--nearest", "--nearest-k", "0"], "--nearest-k must be between 1 and 32"),
    (["--nearest", "--grid", "x.txt"], "--grid must end in .png"),
    (["--nearest", "--real-vs-real"], "(score a generator) or --real-vs-real"),
])
def test_bad_nearest_arguments(tmp_path, capsys, args, fragment):
    from dcgan.checkpoint import save_generator
    from dcgan.models import build_generator

    kwargs = dict(z_dim=16, img_resolution=32, img_channels=3, base_channels=8, norm="batch", num_classes=0)
    save_generator(build_generator(**kwargs), kwargs, tmp_path / "g.safetensors")
    assert_one_line_error(dcgan_here(capsys, "evaluate", "--checkpoint", tmp_path / "g.safetensors", *args), fragment)
