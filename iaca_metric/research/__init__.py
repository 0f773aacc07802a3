"""The research toolkit, separate from the metric core: the offline demo
(:mod:`~iaca_metric.research.demo`) and the Zero-DCE network with its pretrained weights
(:mod:`~iaca_metric.research.zero_dce`). Training lives in :mod:`iaca_metric.training` (so
``python -m iaca_metric.training.*`` is unchanged). The old paths ``iaca_metric.demo`` and
``iaca_metric.zero_dce`` remain importable as the same module objects."""
