"""Tier 3: the algorithm toolkit. Usable alone, in a notebook, without Ray.

    from xsharp.algos import Model, PretrainSpec, datasets, train

    data = datasets.load("digits")                        # split into train / validation / test
    model = Model([{"dense": {"units": 64}}, {"softmax": {}}], data=data)
    history = train(model, data, epochs=10, batch_size=32, learning_rate=0.1)
    model.accuracy(data.x_test, data.y_test)              # share of test rows classified right
    model.save("digits.npz"); Model.load("digits.npz").predict(data.x_test[:5])

``train`` takes the settings of a job spec's ``train`` section by name (:class:`TrainSpec`);
``fit`` is the loop beneath it, which every execution mode runs.
"""

from . import datasets
from .datasets import Dataset
from .model import Model
from .modules import MODULES, Module, build
from .optim import SGD, apply_updates
from .training import History, PretrainSpec, Progress, ScheduleSpec, SingleWorker, Stopped, TrainSpec, fit, train

__all__ = [
    "MODULES",
    "Dataset",
    "History",
    "Model",
    "Module",
    "PretrainSpec",
    "Progress",
    "SGD",
    "ScheduleSpec",
    "SingleWorker",
    "Stopped",
    "TrainSpec",
    "apply_updates",
    "build",
    "datasets",
    "fit",
    "train",
]
