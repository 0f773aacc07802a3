"""The research toolkit, separate from the metric core: the Zero-DCE enhancement network
(:mod:`~iaca_metric.research.zero_dce`) and the offline demo (:mod:`~iaca_metric.research.demo`). Training
lives in :mod:`iaca_metric.training`. The old paths (``iaca_metric.zero_dce``, ``iaca_metric.demo``)
remain importable."""
