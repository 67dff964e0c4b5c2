"""Small models built by name: linear, logistic/softmax, MLP, 1-D CNN, DeepOBS quadratic."""

from descentlab.models.catalog import BUILDERS, CNN1D, QuadraticModel, build, names

__all__ = ["BUILDERS", "CNN1D", "QuadraticModel", "build", "names"]
