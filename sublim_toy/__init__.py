"""sublim-toy: the MNIST toy of "Subliminal Learning" (Cloud, Le et al., 2026), reproduced.

The names below load on first use, so importing a light module (data, results, plots) never
pulls in the training stack.
"""

import importlib
import os


def default_xla_flag(flag: str, value) -> None:
    """Add `flag=value` to XLA_FLAGS unless XLA_FLAGS already sets `flag`: the user's own
    setting wins. XLA reads XLA_FLAGS when JAX starts its backend, so call this before then."""
    flags = os.environ.get("XLA_FLAGS", "")
    # by name, not substring: --xla_gpu_enable_triton_gemm_int4 is another flag
    if flag not in (token.split("=")[0] for token in flags.split()):
        os.environ["XLA_FLAGS"] = f"{flags} {flag}={value}".strip()


# On a GPU, XLA autotunes Triton kernels for every matmul while it compiles: on one H200 that
# made the paper's 100-seed run compile for 49 s and run for 6.4 s; with cuBLAS's kernels alone
# it compiled in 6.6 s, ran as fast and gave the same accuracies (docs/performance.md). JAX
# starts its backend after this import; other devices ignore the flag.
default_xla_flag("--xla_gpu_enable_triton_gemm", "false")

_EXPORTS = {
    "Config": "sublim_toy.config",
    "UserError": "sublim_toy.errors",
    "load_dataset": "sublim_toy.data",
    "run_experiment": "sublim_toy.experiment",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sublim_toy' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
