"""The generative model: configs, tasks, and a trained model directory (``TrainedModel``); training is
``gensar.model.train.train``."""

from gensar.exports import lazy_exports

__all__ = [
    "ModelRunConfig", "Sample", "SampleEncoder", "TASKS", "TaskConfig", "TrainConfig", "TrainedModel",
]
__getattr__, __dir__ = lazy_exports(__name__, __all__, {
    "gensar.model.train_config": ("ModelRunConfig", "TrainConfig"),
    "gensar.model.task_config": ("TASKS", "TaskConfig"),
    "gensar.model.trained": ("TrainedModel",),
    "gensar.model.encoder": ("SampleEncoder",),
    "gensar.model.samples": ("Sample",),
})
