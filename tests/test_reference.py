"""Reference sets and the statistics cache: computed once, checked against their metadata."""

import json

import numpy as np
import pytest

from dcgan.errors import UserError
from dcgan.metrics.fast import FastExtractor
from dcgan.metrics.reference import RealSource, load_stats, parse_reference, reference_features, save_stats, stats_dir


class Interrupted(Exception):
    pass


class CountingExtractor:
    """Wraps an extractor and counts the images it is given; with `dies_after`, it raises once it has
    seen that many (a process killed in the middle of an extraction)."""

    def __init__(self, inner, dies_after: int | None = None):
        self.inner, self.images, self.dies_after = inner, 0, dies_after
        self.kind, self.label, self.feature_dim = inner.kind, inner.label, inner.feature_dim

    def __call__(self, images):
        if self.dies_after is not None and self.images >= self.dies_after:
            raise Interrupted
        self.images += len(images)
        return self.inner(images)

    def describe(self):
        return self.inner.describe()

    def identity(self):
        return self.inner.identity()


@pytest.fixture
def extractor(fast_extractor_file):
    return CountingExtractor(FastExtractor(fast_extractor_file))


def cars_source(cifar_root):
    return RealSource("folder", str(cifar_root / "train"), "train", ["automobile"])


def test_statistics_are_computed_once_and_cached_without_pickle(extractor, cars, cifar_root, monkeypatch, tmp_path):
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path))
    source = cars_source(cifar_root)
    first = reference_features(extractor, source, cars, progress=False)
    assert extractor.images == 5000
    files = list(stats_dir().iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temporary file left behind
    with np.load(files[0], allow_pickle=False) as npz:
        metadata = json.loads(str(npz["metadata"]))
        assert npz["features"].shape == (5000, 256) and npz["sigma"].dtype == np.float64
    assert metadata["extractor"] == extractor.identity()
    assert metadata["data"]["classes"] == ["automobile"] and metadata["data"]["num_images"] == 5000

    again = reference_features(extractor, source, cars, progress=False)
    assert extractor.images == 5000  # read from the cache, not extracted again
    np.testing.assert_array_equal(again.mu, first.mu)
    np.testing.assert_array_equal(again.features, first.features)


def test_other_data_gets_its_own_statistics(extractor, cars, cifar_root, monkeypatch, tmp_path):
    from dcgan.data import ImageData

    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path))
    half = ImageData(cars.images[:2500], cars.labels[:2500], cars.class_names)
    a = reference_features(extractor, cars_source(cifar_root), cars, progress=False)
    b = reference_features(extractor, cars_source(cifar_root), half, progress=False)
    assert extractor.images == 7500 and len(list(stats_dir().iterdir())) == 2
    assert not np.array_equal(a.mu, b.mu)


def test_the_cache_refuses_statistics_with_other_metadata(extractor, cars, cifar_root, monkeypatch, tmp_path):
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path))
    stats = reference_features(extractor, cars_source(cifar_root), cars, progress=False)
    path = next(stats_dir().iterdir())
    other_weights = json.loads(json.dumps(stats.metadata))
    other_weights["extractor"]["weights_sha256"] = "0" * 64
    with pytest.raises(UserError, match="extractor.weights_sha256="):
        load_stats(path, other_weights)
    other_classes = json.loads(json.dumps(stats.metadata))
    other_classes["data"]["classes"] = ["truck"]
    with pytest.raises(UserError, match=r"data.classes=\['automobile'\], not \['truck'\]"):
        load_stats(path, other_classes)
    assert load_stats(path, stats.metadata).count == 5000

    # A file under the right name with the wrong content is recomputed, never trusted.
    forged = load_stats(path)
    forged.metadata = other_classes
    forged.mu = forged.mu + 1
    save_stats(path, forged)
    fresh = reference_features(extractor, cars_source(cifar_root), cars, progress=False)
    assert extractor.images == 10000
    np.testing.assert_allclose(fresh.mu, stats.mu)


def test_damaged_cache_entries_are_rebuilt(extractor, cars, cifar_root, monkeypatch, tmp_path):
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path))
    reference_features(extractor, cars_source(cifar_root), cars, progress=False)
    path = next(stats_dir().iterdir())
    path.write_bytes(b"not an npz")
    reference_features(extractor, cars_source(cifar_root), cars, progress=False)
    assert extractor.images == 10000
    assert load_stats(path).count == 5000


def test_a_killed_extraction_goes_on_from_its_saved_chunks(extractor, cars, cifar_root, monkeypatch, tmp_path):
    from dcgan.metrics import reference

    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path))
    monkeypatch.setattr(reference, "CHUNK", 1000)
    from dcgan.data import ImageData

    inner = extractor.inner
    cars = ImageData(cars.images[:2500], cars.labels[:2500], cars.class_names)
    dying = CountingExtractor(inner, dies_after=1500)  # killed in the middle of the second chunk
    with pytest.raises(Interrupted):
        reference_features(dying, cars_source(cifar_root), cars, progress=False)
    (partial,) = stats_dir().glob("*.partial")
    assert sorted(p.name for p in partial.iterdir()) == ["000000000-000001000.npy"]

    resumed = reference_features(extractor, cars_source(cifar_root), cars, progress=False)
    assert extractor.images == 1500  # the saved chunk was read, not extracted again
    assert not partial.exists() and len(list(stats_dir().iterdir())) == 1
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "fresh"))
    whole = reference_features(CountingExtractor(inner), cars_source(cifar_root), cars, progress=False)
    np.testing.assert_array_equal(resumed.features, whole.features)

    # A damaged chunk is extracted again, never trusted.
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "damaged"))
    partial = stats_dir() / partial.name
    partial.mkdir(parents=True)
    (partial / "000000000-000001000.npy").write_bytes(b"garbage")
    np.save(partial / "000001000-000002000.npy", np.zeros((7, 256), np.float32))
    extractor.images = 0
    again = reference_features(extractor, cars_source(cifar_root), cars, progress=False)
    assert extractor.images == 2500
    np.testing.assert_array_equal(again.features, whole.features)


def test_pytorch_fid_statistics_files_load(tmp_path):
    path = tmp_path / "fid_stats.npz"
    np.savez(path, mu=np.zeros(4), sigma=np.eye(4))
    stats = load_stats(path)
    assert stats.metadata == {} and stats.features is None and stats.sigma.shape == (4, 4)
    np.savez(tmp_path / "bad.npz", mu=np.zeros(4), sigma=np.eye(3))
    with pytest.raises(UserError, match="do not fit together"):
        load_stats(tmp_path / "bad.npz")


def test_reference_specs(tmp_path):
    assert parse_reference("cifar10-train", data_root="d") == RealSource("cifar10", "d", "train", [], False)
    assert parse_reference("fashion-mnist-test", classes=["3"]).dataset == "fashion-mnist"
    (tmp_path / "imgs").mkdir()
    assert parse_reference(str(tmp_path / "imgs")).dataset == "folder"
    np.savez(tmp_path / "s.npz", mu=np.zeros(2), sigma=np.eye(2))
    assert parse_reference(str(tmp_path / "s.npz")) == tmp_path / "s.npz"
    with pytest.raises(UserError, match="^--real 'imagenet-train' is not a dataset split"):
        parse_reference("imagenet-train", what="--real")
    with pytest.raises(UserError, match="statistics file not found"):
        parse_reference(str(tmp_path / "missing.npz"))
    with pytest.raises(UserError, match="classes do not apply"):
        parse_reference(str(tmp_path / "s.npz"), classes=["cat"])


def test_a_killed_evaluation_goes_on_from_its_saved_generated_chunks(extractor, shipped_cars, monkeypatch, tmp_path):
    from dcgan.metrics import reference
    from dcgan.metrics.evaluate import generated_features

    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path))
    monkeypatch.setattr(reference, "CHUNK", 128)
    inner = extractor.inner
    dying = CountingExtractor(inner, dies_after=192)  # killed in the middle of the second chunk
    with pytest.raises(Interrupted):
        generated_features(shipped_cars, dying, 300, seed=5, resumable=True, progress=False)
    (partial,) = stats_dir().glob("generated-*.partial")
    assert sorted(p.name for p in partial.iterdir()) == ["000000000-000000128.npy"]

    other_seeds = CountingExtractor(inner)  # other images: the saved chunk is not theirs
    generated_features(shipped_cars, other_seeds, 300, seed=6, resumable=True, progress=False)
    assert other_seeds.images == 300

    resumed = generated_features(shipped_cars, extractor, 300, seed=5, resumable=True, progress=False)
    assert extractor.images == 300 - 128  # the saved chunk was read, not extracted again
    assert not partial.exists() and resumed.logits is None
    whole = generated_features(shipped_cars, CountingExtractor(inner), 300, seed=5, progress=False)
    np.testing.assert_array_equal(resumed.features, whole.features)


@pytest.mark.parametrize(("num_gen", "metrics", "resumable"), [(300, ["fid", "kid"], True), (100, ["fid"], False),
                                                               (300, ["fid", "is"], False)])
def test_evaluate_extracts_large_sets_without_is_resumably(shipped_cars, fast_extractor_file, cifar_root, monkeypatch,
                                                           tmp_path, num_gen, metrics, resumable):
    from dcgan.metrics import evaluate as evaluation

    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path))
    monkeypatch.setattr(evaluation, "CHUNK", 128)
    asked = []
    real = evaluation.generated_features
    monkeypatch.setattr(evaluation, "generated_features",
                        lambda *args, **kwargs: asked.append(kwargs["resumable"]) or real(*args, **kwargs))
    evaluation.evaluate(shipped_cars, cars_source(cifar_root), metrics=metrics, features="fast",
                        fast_extractor=str(fast_extractor_file), num_gen=num_gen, progress=False)
    assert asked == [resumable]
