"""sublim-toy: the MNIST toy of "Subliminal Learning" (Cloud, Le et al., 2026), reproduced.

The names below load on first use, so importing a light module (data, results, plots) never
pulls in the training stack.
"""

import importlib
import os

# On a GPU, XLA autotunes Triton kernels for every matmul while it compiles: on one H200 that
# made the paper's 100-seed run compile for 49 s and run for 6.4 s; with cuBLAS's kernels alone
# it compiled in 6.6 s, ran as fast and gave the same accuracies (docs/performance.md). XLA
# reads XLA_FLAGS when JAX starts its backend, which is after this import; a setting of the flag
# the user made wins, and other devices ignore it.
_TRITON_GEMM = "--xla_gpu_enable_triton_gemm"
if _TRITON_GEMM not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_TRITON_GEMM}=false".strip()

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
