"""Evaluation of a trained run: on the saved candidate lists or the whole catalog."""

from gensar.exports import lazy_exports

__all__ = [
    "EvalConfig", "evaluate_model", "evaluate_run", "format_metrics",
]
__getattr__, __dir__ = lazy_exports(__name__, __all__, {
    "gensar.eval.config": ("EvalConfig",),
    "gensar.eval.protocol": ("evaluate_model", "evaluate_run"),
    "gensar.eval.table": ("format_metrics",),
})
