"""The research toolkit, separate from the metric core: the offline demo
(:mod:`~iaca_metric.research.demo`). Training lives in :mod:`iaca_metric.training`; the Zero-DCE network
is still :mod:`iaca_metric.zero_dce` (another branch is editing it; it moves here after that merge, with
a shim at the old path like ``iaca_metric.demo``'s). The old path ``iaca_metric.demo`` remains importable."""
