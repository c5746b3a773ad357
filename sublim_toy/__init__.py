"""sublim-toy: the MNIST toy of "Subliminal Learning" (Cloud, Le et al., 2026), reproduced.

The names below load on first use, so importing a light module (data, results, plots) never
pulls in the training stack.
"""

import importlib

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
