"""Moved to :mod:`iaca_metric.research.demo`; ``iaca_metric.demo`` stays importable as the same module
(documented public path), so attributes, private helpers and monkeypatching behave as before."""
import sys

from .research import demo as _moved

sys.modules[__name__] = _moved
