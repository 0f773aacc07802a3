"""iaca-metric: the IACA perceptual quality metric and loss for low-light image enhancement.

Quick start::

    import iaca_metric
    s = iaca_metric.score("enhanced.png", "low_light_input.png")   # float, higher is better

See :func:`iaca_metric.score`, :func:`iaca_metric.score_folder`, :class:`iaca_metric.IACALoss` and
:class:`iaca_metric.IACAMetric`.
"""
__version__ = "0.1.0"

# Import order is the dependency order (no cycles): inputs and config first, then weights, model, engine.
from .inputs import InputError  # noqa: E402
from ._config import ModelConfig  # noqa: E402
from .hub import WeightsError  # noqa: E402
from .model import IACAMetric, IACAOutput  # noqa: E402
from ._engine import ScoreError  # noqa: E402
from .api import score  # noqa: E402
from .loss import IACALoss  # noqa: E402
from .stateful import IACAScore  # noqa: E402
from .folder_scoring import score_folder  # noqa: E402

__all__ = ["__version__", "IACAMetric", "IACAOutput", "ModelConfig", "WeightsError", "score", "score_folder",
           "IACALoss", "InputError", "ScoreError", "IACAScore"]
