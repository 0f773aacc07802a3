"""Hub-ready weight folders published with iaca-metric; installed as ``iaca_metric._weights``."""
