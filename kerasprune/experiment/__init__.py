"""The experiment harness: configs, the methods they compare, the runner and the report."""
from . import methods  # noqa: F401  (registers the built-in methods)
from .config import load_config
from .registry import METHODS, Outcome, RunContext, register_method
from .runner import run_experiment
from .spec import ExperimentConfig, TrainSpec

__all__ = ["ExperimentConfig", "METHODS", "Outcome", "RunContext", "TrainSpec",
           "load_config", "register_method", "run_experiment"]
