import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sublim_toy.config import Config, weight_sd
from sublim_toy.model import Network, network_for, select_outputs


def _layers(params):
    """[(kernel, bias), ...] as numpy arrays, input layer first."""
    return [
        (
            np.asarray(params["layers"][i]["kernel"][...]),
            np.asarray(params["layers"][i]["bias"][...]),
        )
        for i in range(len(params["layers"]))
    ]


def test_paper_architecture_shapes():
    network = network_for(Config())
    params = network.init(jax.random.key(0))
    shapes = [(kernel.shape, bias.shape) for kernel, bias in _layers(params)]
    assert shapes == [((784, 256), (256,)), ((256, 256), (256,)), ((256, 13), (13,))]
    assert network.apply(params, jnp.zeros((5, 784))).shape == (5, 13)


@pytest.mark.parametrize(
    ("scheme", "variance"),
    [("normal", 1.0), ("lecun", 1.0), ("he", 2.0)],
)
def test_weight_variance_is_scale_over_fan_in(scheme, variance):
    network = Network(sizes=(784, 512, 512), init_scheme=scheme)
    for kernel, bias in _layers(network.init(jax.random.key(1))):
        fan_in = kernel.shape[0]
        assert kernel.var() == pytest.approx(variance / fan_in, rel=0.03)
        assert np.all(bias == 0)


def test_normal_init_is_untruncated_but_lecun_is_truncated():
    # N(0, 1/d_in) as the authors draw it has tails past 2 sd; Flax's LeCun default cuts them.
    kernels = {
        scheme: _layers(Network(sizes=(400, 1000), init_scheme=scheme).init(jax.random.key(2)))[0][
            0
        ]
        for scheme in ("normal", "lecun")
    }
    sd = 1 / np.sqrt(400)
    assert np.abs(kernels["normal"]).max() > 3 * sd
    assert np.abs(kernels["lecun"]).max() < 2.01 * sd * 1.1378  # truncation at 2 (rescaled) sd


def test_torch_init_is_uniform_in_one_over_sqrt_fan_in_for_weights_and_biases():
    for kernel, bias in _layers(
        Network(sizes=(100, 300, 50), init_scheme="torch").init(jax.random.key(3))
    ):
        bound = 1 / np.sqrt(kernel.shape[0])
        for values in (kernel, bias):
            assert np.abs(values).max() <= bound
            assert np.abs(values).max() > 0.9 * bound
        assert np.any(bias != 0)


def test_apply_matches_an_independent_numpy_forward_pass():
    network = Network(sizes=(7, 5, 4, 3), activation="relu")
    params = network.init(jax.random.key(4))
    x = np.random.default_rng(0).uniform(-1, 1, (6, 7)).astype(np.float32)
    hidden = x
    layers = _layers(params)
    for kernel, bias in layers[:-1]:
        hidden = np.maximum(hidden @ kernel + bias, 0)
    expected = hidden @ layers[-1][0] + layers[-1][1]
    np.testing.assert_allclose(network.apply(params, x), expected, rtol=1e-5, atol=1e-6)


def test_vmapped_init_equals_init_per_key():
    network = network_for(Config(hidden=(16,)))
    keys = jax.random.split(jax.random.key(5), 3)
    stacked = jax.vmap(network.init)(keys)
    for i in range(3):
        single = network.init(keys[i])
        for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(single), strict=True):
            np.testing.assert_array_equal(a[i], b)


def test_float64_parameters_when_asked():
    with jax.enable_x64(True):
        params = Network(sizes=(3, 4, 2), param_dtype=jnp.float64).init(jax.random.key(0))
        assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(params))


def test_output_slices():
    logits = jnp.arange(13.0)[None]
    assert select_outputs(logits, "regular").tolist() == [list(range(10))]
    assert select_outputs(logits, "aux").tolist() == [[10.0, 11.0, 12.0]]
    assert select_outputs(logits, "all").shape == (1, 13)
    with pytest.raises(ValueError, match="unknown outputs"):
        select_outputs(logits, "hidden")


@pytest.mark.parametrize("scheme", ["normal", "lecun", "he", "torch"])
def test_init_scale_multiplies_the_weights_drawn_from_the_same_key(scheme):
    unit = _layers(Network(sizes=(20, 30, 5), init_scheme=scheme).init(jax.random.key(7)))
    doubled = _layers(
        Network(sizes=(20, 30, 5), init_scheme=scheme, init_scale=2.0).init(jax.random.key(7))
    )
    for (kernel, bias), (kernel2, bias2) in zip(unit, doubled, strict=True):
        np.testing.assert_allclose(kernel2, 2 * kernel, rtol=1e-6)
        np.testing.assert_allclose(bias2, 2 * bias, rtol=1e-6)


@pytest.mark.parametrize("scheme", ["normal", "lecun", "he", "torch"])
@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_weight_sd_is_the_drawn_weights_sd_times_sqrt_fan_in(scheme, scale):
    network = Network(sizes=(784, 512, 512), init_scheme=scheme, init_scale=scale)
    for kernel, _ in _layers(network.init(jax.random.key(2))):
        measured = kernel.std() * np.sqrt(kernel.shape[0])
        assert measured == pytest.approx(weight_sd(scheme, scale), rel=0.02)


def test_the_output_layer_gradient_is_x_transpose_g_computed_as_an_out_by_in_gemm():
    # The output layer reads its kernel through a transposed copy so that reverse mode writes
    # its weight gradient as g^T x, [out, in], the orientation XLA's CPU GEMM runs fastest
    # for 13 columns. The gradient must still be x^T g, and the compiled program must hold
    # a GEMM writing [13, 32] in memory and none writing [32, 13] (which XLA emits without
    # the barrier).
    network = Network(sizes=(20, 32, 13), activation="relu")
    params = network.init(jax.random.key(0))
    x = np.random.default_rng(1).uniform(-1, 1, (64, 20)).astype(np.float32)
    g = np.random.default_rng(2).normal(size=(64, 13)).astype(np.float32)

    def loss(params, x):
        return jnp.sum(network.apply(params, x) * g)

    grads = jax.grad(loss)(params, x)
    (kernel1, bias1), _ = _layers(params)
    hidden = np.maximum(x @ kernel1 + bias1, 0)
    np.testing.assert_allclose(
        grads["layers"][1]["kernel"][...], hidden.T @ g, rtol=1e-5, atol=1e-5
    )
    hlo = jax.jit(jax.grad(loss)).lower(params, x).compile().as_text()
    dot_outputs = {_physical_shape(line) for line in hlo.splitlines() if " dot(" in line}
    assert (13, 32) in dot_outputs and (32, 13) not in dot_outputs


def _physical_shape(hlo_line: str) -> tuple[int, ...]:
    """An HLO instruction's result dims as laid out in memory, major to minor: f32[32,13]{0,1}
    is (13, 32)."""
    dims, layout = re.search(r"= f32\[([\d,]*)\]\{([\d,]*)\}", hlo_line).groups()
    dims = [int(d) for d in dims.split(",")]
    minor_to_major = [int(axis) for axis in layout.split(",")]
    return tuple(dims[axis] for axis in reversed(minor_to_major))
