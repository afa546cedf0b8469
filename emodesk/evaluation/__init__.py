"""Evaluating models against labelled data: the metrics JSON of docs/formats.md."""

from emodesk.evaluation.metrics import compute_metrics

__all__ = ["compute_metrics"]
