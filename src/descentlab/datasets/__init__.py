"""Real datasets, offline: scikit-learn's bundled sets, generated mnist1d, synthetic problems."""

from descentlab.datasets.catalog import LOADERS, load, names
from descentlab.datasets.splits import DataSplits, make_splits, split_indices

__all__ = ["DataSplits", "LOADERS", "load", "make_splits", "names", "split_indices"]
