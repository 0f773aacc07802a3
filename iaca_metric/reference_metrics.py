"""Moved to :mod:`iaca_metric.evaluation.reference_metrics`; ``iaca_metric.reference_metrics`` stays importable as the same module
(documented public path), so attributes, private helpers and monkeypatching behave as before."""
import sys

from .evaluation import reference_metrics as _moved

sys.modules[__name__] = _moved
