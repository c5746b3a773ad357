"""The seed axis over several devices: forced CPU devices in a child process."""

import json
import os
import subprocess
import sys

import jax
import numpy as np

from sublim_toy.config import Config
from sublim_toy.experiment import run_experiment
from sublim_toy.sharding import padded_seed_count, seed_mesh

CONFIG = Config(
    seeds=4, hidden=(32,), teacher_epochs=1, student_epochs=1, noise_images=4096, probe_every=2
)
FLAGS = ["--epochs", "1", "--set", "hidden=32", "--noise-images", "4096", "--probe-every", "2"]


def _reproduce_on_devices(devices: int, seeds: int, out, cache) -> tuple[dict, str]:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    env["SUBLIM_TOY_CACHE"] = str(cache)
    command = [sys.executable, "-m", "sublim_toy", "reproduce", "--seeds", str(seeds), *FLAGS]
    done = subprocess.run(
        [*command, "--no-progress", "--out", str(out)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    return json.loads((out / "results.json").read_text()), done.stderr


def test_seed_axis_sharded_over_four_devices_gives_the_unsharded_numbers(
    mnist, mnist_cache, tmp_path
):
    sharded, _ = _reproduce_on_devices(4, 4, tmp_path / "four", mnist_cache)
    assert sharded["devices_used"] == 4
    unsharded = run_experiment(CONFIG, mnist)
    assert unsharded["devices_used"] == jax.device_count() == 1
    assert sharded["accuracy"] == unsharded["accuracy"]
    for name in ("student_aux", "cross_all"):
        for metric in ("cos", "teacher_loss", "accuracy"):
            np.testing.assert_allclose(
                sharded["alignment"][name][metric],
                unsharded["alignment"][name][metric],
                rtol=1e-5,
                atol=1e-6,
            )


def test_seeds_that_do_not_split_evenly_are_padded_and_the_padding_dropped(mnist_cache, tmp_path):
    results, stderr = _reproduce_on_devices(4, 3, tmp_path / "three", mnist_cache)
    assert results["devices_used"] == 4
    assert all(len(values) == 3 for values in results["accuracy"].values())
    assert len(results["alignment"]["student_aux"]["cos"]) == 3
    assert "training 4 and keeping the first 3" in stderr


def test_the_mesh_spans_every_device_and_padding_rounds_up_to_it():
    assert seed_mesh().devices.size == jax.device_count() == 1  # one CPU device here
    assert padded_seed_count(3) == 3
