"""Moved to :mod:`iaca_metric.evaluation.no_reference_metrics`; ``iaca_metric.no_reference_metrics`` stays importable as
the same module (documented public path), so attributes, private helpers and monkeypatching behave as before."""
import sys

from .evaluation import no_reference_metrics as _moved

sys.modules[__name__] = _moved
