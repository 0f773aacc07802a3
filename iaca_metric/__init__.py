"""iaca-metric: the IACA perceptual quality metric and loss for low-light image enhancement.

Quick start::

    import iaca_metric
    s = iaca_metric.score("enhanced.png", "low_light_input.png")   # float, higher is better

See :func:`iaca_metric.score`, :class:`iaca_metric.IACALoss` and :class:`iaca_metric.IACAMetric`.
"""
__version__ = "0.1.0"

from .model import IACAMetric, IACAOutput  # noqa: E402
from .hub import WeightsError  # noqa: E402

__all__ = ["__version__", "IACAMetric", "IACAOutput", "WeightsError"]

from .api import score  # noqa: E402
from .loss import IACALoss  # noqa: E402
from .inputs import InputError  # noqa: E402
from .stateful import IACAScore  # noqa: E402

__all__ += ["score", "IACALoss", "InputError", "IACAScore"]
