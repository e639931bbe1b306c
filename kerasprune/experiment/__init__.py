"""The experiment harness: configs, the methods they compare, the runner and the report."""
from .config import ExperimentConfig, TrainSpec, load_config
from .methods import METHODS, Outcome, RunContext, register_method
from .runner import run_experiment

__all__ = ["ExperimentConfig", "METHODS", "Outcome", "RunContext", "TrainSpec",
           "load_config", "register_method", "run_experiment"]
