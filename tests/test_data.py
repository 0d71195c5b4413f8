import pytest
import torch
from PIL import Image

from dcgan.data import BatchStream, ImageData, load_dataset
from dcgan.errors import UserError


def test_automobile_class_of_the_shared_archive(cifar_root, cars):
    assert cars.images.shape == (5000, 3, 32, 32) and cars.images.dtype == torch.uint8
    assert cars.class_names[cars.labels[0]] == "automobile"
    assert (cars.labels == cars.labels[0]).all()
    # The optional train/ level is found when the root is the archive's top folder.
    again = load_dataset("folder", cifar_root, classes=["1"])
    assert torch.equal(again.images, cars.images)


def test_cache_gives_the_same_tensor_without_decoding(cifar_root, cars, monkeypatch):
    import dcgan.data

    def refuse(*args, **kwargs):
        raise AssertionError("decoded although the cache holds this dataset")

    monkeypatch.setattr(dcgan.data, "_decode", refuse)
    cached = load_dataset("folder", cifar_root / "train", classes=["automobile"])
    assert torch.equal(cached.images, cars.images) and torch.equal(cached.labels, cars.labels)


def test_unknown_class_lists_the_valid_ones(cifar_root):
    with pytest.raises(UserError, match="unknown class 'cars'; valid classes: airplane, automobile, bird"):
        load_dataset("folder", cifar_root / "train", classes=["cars"])


def test_missing_and_empty_folders_say_where_data_goes(tmp_path):
    with pytest.raises(UserError, match="does not exist; put images in"):
        load_dataset("folder", tmp_path / "nowhere")
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    with pytest.raises(UserError, match="no images"):
        load_dataset("folder", tmp_path / "empty")


def test_corrupt_image_is_named(tmp_path):
    folder = tmp_path / "imgs" / "a"
    folder.mkdir(parents=True)
    Image.new("RGB", (32, 32), "red").save(folder / "good.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(UserError, match="cannot read image .*broken.jpg"):
        load_dataset("folder", tmp_path / "imgs", use_cache=False)


def test_grayscale_and_large_images_pick_channels_and_resolution(tmp_path):
    folder = tmp_path / "gray" / "x"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("L", (100, 80), 40 * i).save(folder / f"{i}.png")
    data = load_dataset("folder", tmp_path / "gray", use_cache=False)
    assert data.images.shape == (3, 1, 64, 64)
    assert data.images[2].float().mean() == pytest.approx(80, abs=1)


def test_torchvision_dataset_missing_without_download_names_the_folder(tmp_path):
    with pytest.raises(UserError, match=f"cifar10 not found under {tmp_path}.*drop --no-download"):
        load_dataset("cifar10", tmp_path, download=False)


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_a_download_offline_is_one_line_naming_the_folder_to_fill(tmp_path, monkeypatch, name):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(UserError, match=f"cannot download {name} .*put the dataset in {tmp_path}") as raised:
        load_dataset(name, tmp_path, download=True)
    assert "\n" not in str(raised.value)


def test_training_downloads_torchvision_data_by_default():
    from dcgan.config import resolve_config

    assert resolve_config("cpu-v1").download is True
    assert resolve_config("cpu-v1", overrides={"download": False}).download is False


def make_data(n=40):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ImageData(images, torch.arange(n), ["x"])


def test_batches_cover_each_epoch_once_and_resume_exactly():
    data = make_data()
    stream = BatchStream(data, 8, seed=1, device=torch.device("cpu"), hflip=False)
    epoch = torch.cat([next(stream)[1] for _ in range(5)])
    assert sorted(epoch.tolist()) == list(range(40))
    for _ in range(3):
        next(stream)
    state = stream.state_dict()
    expected = [next(stream)[0] for _ in range(4)]
    resumed = BatchStream(data, 8, seed=1, device=torch.device("cpu"), hflip=False)
    resumed.load_state_dict(state)
    for want in expected:
        assert torch.equal(next(resumed)[0], want)


def test_batches_are_scaled_to_minus_one_one_and_flipped():
    images = torch.zeros(16, 1, 1, 2, dtype=torch.uint8)
    images[:, :, :, 1] = 255  # left pixel black, right pixel white
    stream = BatchStream(ImageData(images, torch.zeros(16, dtype=torch.int64), ["x"]), 16,
                         seed=0, device=torch.device("cpu"))
    batch, _ = next(stream)
    assert batch.min() == -1 and batch.max() == 1
    flipped = batch[:, 0, 0, 0] == 1
    assert 0 < flipped.sum() < 16  # some flipped, some not


def test_distributed_ranks_see_disjoint_data():
    data = make_data()
    seen = []
    for rank in (0, 1):
        stream = BatchStream(data, 4, seed=0, device=torch.device("cpu"), rank=rank, world_size=2)
        seen.append({int(label) for _ in range(stream.batches_per_epoch) for label in next(stream)[1]})
    assert len(seen[0]) == len(seen[1]) == 20 and not seen[0] & seen[1]


def test_too_few_images_for_a_batch():
    with pytest.raises(UserError, match="fewer than one batch"):
        BatchStream(make_data(5), 8, seed=0, device=torch.device("cpu"))


def test_folder_images_are_decoded_as_they_look(tmp_path, monkeypatch, capsys):
    import numpy as np

    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "images" / "things"
    folder.mkdir(parents=True)
    Image.new("L", (32, 32), 90).save(folder / "a-grey.png")  # sorts first: the folder is still colour
    Image.new("RGB", (32, 32), (200, 30, 30)).save(folder / "b-red.png")
    Image.fromarray(np.full((32, 32), 40000, np.uint16)).save(folder / "c-16bit.png")
    clear = np.zeros((32, 32, 4), np.uint8)  # black and fully transparent
    Image.fromarray(clear, "RGBA").save(folder / "d-transparent.png")
    halves = np.zeros((16, 32, 3), np.uint8)
    halves[:, 16:] = 255  # left black, right white; EXIF says: turn 90 degrees clockwise to view
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(halves).save(folder / "e-rotated.jpg", exif=exif, quality=100)
    (tmp_path / "images" / "nothing").mkdir()

    data = load_dataset("folder", tmp_path / "images", classes=["things"], resolution=32)
    assert data.channels == 3 and len(data) == 5
    grey, red, sixteen, transparent, rotated = data.images
    assert grey[:, 0, 0].tolist() == [90, 90, 90] and red[:, 0, 0].tolist() == [200, 30, 30]
    assert sixteen[:, 0, 0].tolist() == [156, 156, 156]  # 40000 / 257, not clipped to 255
    assert transparent.min() == 255  # composited on white
    assert rotated[:, 2, 2].max() < 60 and rotated[:, 2, -3].max() < 60  # the black half is on top now
    assert rotated[:, -3, 2].min() > 200 and rotated[:, -3, -3].min() > 200
    said = capsys.readouterr().out
    assert "1 turned upright by their EXIF orientation" in said and "1 16-bit, scaled to 8-bit" in said
    assert "1 transparent, composited on white" in said

    with pytest.raises(UserError, match="no images in the class folder.s. nothing under"):
        load_dataset("folder", tmp_path / "images", classes=["nothing"])


def test_class_indices_are_ascii_digits():
    from dcgan.data import class_index

    assert class_index("1", ["cat", "dog"]) == 1
    with pytest.raises(UserError, match="unknown class '¹'"):
        class_index("¹", ["cat", "dog"])  # str.isdigit() says yes, int() says no
