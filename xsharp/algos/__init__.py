"""Tier 3: the algorithm toolkit. Usable alone, in a notebook, without Ray.

    from xsharp.algos import Model, datasets, fit
"""

from . import datasets
from .model import Model
from .modules import MODULES, Module, build
from .optim import SGD, apply_updates
from .training import History, Progress, SingleWorker, Stopped, fit

__all__ = ["MODULES", "Module", "Model", "SGD", "History", "Progress", "SingleWorker", "Stopped", "apply_updates", "build", "datasets", "fit"]
