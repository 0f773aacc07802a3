"""Moved to :mod:`iaca_metric.research.zero_dce`; ``iaca_metric.zero_dce`` stays importable as the same module
(documented public path), so attributes, private helpers and monkeypatching behave as before."""
import sys

from .research import zero_dce as _moved

sys.modules[__name__] = _moved
