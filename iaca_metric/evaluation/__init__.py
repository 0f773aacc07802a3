"""Evaluation helpers, separate from the metric core: classical full-reference metrics
(:mod:`~iaca_metric.evaluation.reference_metrics`: PSNR, SSIM, MS-SSIM, LPIPS), the NIQE and BRISQUE
no-reference metrics (:mod:`~iaca_metric.evaluation.no_reference_metrics`), no-reference baselines
(:mod:`~iaca_metric.evaluation.baselines`) and rank correlation (:mod:`~iaca_metric.evaluation.correlation`).
None of them is needed to score images with IACA. The old paths (``iaca_metric.reference_metrics``,
``iaca_metric.no_reference_metrics``, ...) remain importable as the same module objects."""
