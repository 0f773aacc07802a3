"""Moved to :mod:`iaca_metric.evaluation.correlation`; ``iaca_metric.correlation`` stays importable as the same module
(documented public path), so attributes, private helpers and monkeypatching behave as before."""
import sys

from .evaluation import correlation as _moved

sys.modules[__name__] = _moved
