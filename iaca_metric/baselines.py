"""Moved to :mod:`iaca_metric.evaluation.baselines`; ``iaca_metric.baselines`` stays importable as the same module
(documented public path), so attributes, private helpers and monkeypatching behave as before."""
import sys

from .evaluation import baselines as _moved

sys.modules[__name__] = _moved
