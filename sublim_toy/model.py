"""The paper's MLP (section 6.2): 784 -> 256 -> 256 -> 10 + m, in Flax NNX, used as a pure function.

Training and the theorem check both go through `Network.apply(params, x)`: the model is split
once into a static graph and a parameter pytree, so a shared initialisation is literally the
same pytree and a vmap over seeds is a vmap over pytrees.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from sublim_toy.config import N_CLASSES, Config, weight_sd

Params = Any  # an nnx.State pytree of arrays

ACTIVATION_FUNCTIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "identity": lambda x: x,  # a deep linear network (linear_toy.py)
}


def layer_index(path) -> int:
    """Which layer a leaf belongs to, from its `tree_map_with_path` path:
    params["layers"][i][...] puts the index in the second path entry."""
    return path[1].key


def _initializers(scheme: str, fan_in: int, scale: float = 1.0):
    """(kernel_init, bias_init) of one layer for an init scheme (docs/pitfalls.md, pitfall 3).

    `scale` multiplies the drawn weights (and the torch scheme's uniform biases).
    """
    zeros = jax.nn.initializers.zeros
    if scheme == "normal":  # the authors' N(0, 1/d_in), zero bias
        base = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal")
    elif scheme == "lecun":  # Flax's default: truncated normal with variance 1/d_in
        base = jax.nn.initializers.lecun_normal()
    elif scheme == "he":  # N(0, 2/d_in), zero bias
        base = jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal")
    elif scheme == "torch":  # PyTorch nn.Linear default: U(+-1/sqrt(d_in)) for weights and bias
        bound = scale / math.sqrt(fan_in)

        def uniform(key, shape, dtype=jnp.float32):
            return jax.random.uniform(key, shape, dtype, -bound, bound)

        return uniform, uniform
    else:
        raise ValueError(f"unknown init scheme {scheme!r}")
    if scale == 1.0:
        return base, zeros

    def scaled(key, shape, dtype=jnp.float32):
        return scale * base(key, shape, dtype)

    return scaled, zeros


def init_sd(scheme: str, fan_in: int, scale: float = 1.0) -> dict[str, float]:
    """The sd of one layer's init draw, per leaf: {"kernel": ..., "bias": ...}, as
    `_initializers` draws them (the truncated "lecun" normal has variance exactly 1/d_in;
    "torch" draws its biases like its weights, the other schemes start them at zero)."""
    kernel = weight_sd(scheme, scale) / math.sqrt(fan_in)
    return {"kernel": kernel, "bias": kernel if scheme == "torch" else 0.0}


def _through_transposed_kernel(inputs, kernel, dimension_numbers, **kwargs):
    """x @ kernel, as nnx.Linear's dot_general, with the kernel read as a transposed copy.

    Same forward values; what changes is the weight gradient reverse mode writes: a GEMM whose
    output is [out, in] (g^T x) instead of [in, out] (x^T g). For the output layer (10 + m
    columns) XLA's CPU GEMM runs the [in, out] orientation several times slower
    (docs/performance.md); the barrier keeps XLA from folding the transpose back into that
    GEMM. The kernel itself stays [in, out] like every other layer's.
    """
    (contracting, (in_axis,)), batch = dimension_numbers
    if in_axis != 0 or batch != ((), ()):
        raise ValueError(f"expected nnx.Linear's dot_general, got {dimension_numbers}")
    kernel_out_in = jax.lax.optimization_barrier(kernel.T)
    return jax.lax.dot_general(inputs, kernel_out_in, ((contracting, (1,)), batch), **kwargs)


class MLP(nnx.Module):
    """Fully connected network: `activation` after every layer but the last."""

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        activation: str = "relu",
        init: str = "normal",
        init_scale: float = 1.0,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.activation = activation
        layers = []
        shapes = list(zip(sizes[:-1], sizes[1:], strict=True))
        for index, (d_in, d_out) in enumerate(shapes):
            kernel_init, bias_init = _initializers(init, d_in, init_scale)
            output_layer = index == len(shapes) - 1
            layers.append(
                nnx.Linear(
                    d_in,
                    d_out,
                    kernel_init=kernel_init,
                    bias_init=bias_init,
                    param_dtype=param_dtype,
                    dot_general=_through_transposed_kernel if output_layer else jax.lax.dot_general,
                    rngs=rngs,
                )
            )
        self.layers = nnx.List(layers)

    def __call__(self, x):
        act = ACTIVATION_FUNCTIONS[self.activation]
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x)


@dataclass(frozen=True)
class Network:
    """An MLP architecture as two pure functions: `init(key)` and `apply(params, x)`."""

    sizes: tuple[int, ...]
    activation: str = "relu"
    init_scheme: str = "normal"
    init_scale: float = 1.0
    param_dtype: Any = jnp.float32

    def _module(self, key) -> MLP:
        return MLP(
            self.sizes,
            activation=self.activation,
            init=self.init_scheme,
            init_scale=self.init_scale,
            param_dtype=self.param_dtype,
            rngs=nnx.Rngs(params=key),
        )

    @functools.cached_property
    def graphdef(self):
        return nnx.graphdef(nnx.eval_shape(lambda: self._module(jax.random.key(0))))

    def init(self, key) -> Params:
        """Fresh parameters from one key; vmap over keys gives one model per seed."""
        return nnx.state(self._module(key), nnx.Param)

    def apply(self, params: Params, x):
        """Logits [..., n_outputs] for inputs x [..., d_in] already scaled to [-1, 1]."""
        return nnx.merge(self.graphdef, params)(x)


def network_for(config: Config, input_dim: int = 784, param_dtype=jnp.float32) -> Network:
    """The experiment's MLP: input_dim -> hidden... -> 10 + m."""
    return Network(
        sizes=(input_dim, *config.hidden, config.n_outputs),
        activation=config.activation,
        init_scheme=config.init,
        init_scale=config.init_scale,
        param_dtype=param_dtype,
    )


def student_network_for(config: Config, input_dim: int = 784, param_dtype=jnp.float32) -> Network:
    """The students' MLP: the teacher's (`network_for`) with `config.student_widths` hidden."""
    sizes = (input_dim, *config.student_widths, config.n_outputs)
    return dataclasses.replace(network_for(config, input_dim, param_dtype), sizes=sizes)


def select_outputs(logits, outputs: str):
    """The logits a loss sees: "regular" (0..9), "aux" (10..10+m-1) or "all" (section 6.2)."""
    if outputs == "regular":
        return logits[..., :N_CLASSES]
    if outputs == "aux":
        return logits[..., N_CLASSES:]
    if outputs == "all":
        return logits
    raise ValueError(f"unknown outputs {outputs!r}: choose regular, aux or all")
