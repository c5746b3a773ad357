"""sublim-toy: the MNIST toy of "Subliminal Learning" (Cloud, Le et al., 2026), reproduced."""

from sublim_toy.config import Config
from sublim_toy.data import load_dataset
from sublim_toy.errors import UserError
from sublim_toy.experiment import run_experiment

__all__ = ["Config", "UserError", "load_dataset", "run_experiment"]
