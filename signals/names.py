"""The analysis's public names: its Celery task and the Redis keys others read.

A module of constants, so readers (``dashboard.health``, ``bench/``) import the names from their
owner without loading the analysis (numpy, TA-Lib) just to spell a key.
"""

ANALYZE_TASK = "signals.analyze_market"
# epoch ms of the end of the last successful pass (dashboard.health's "analysis" check)
LAST_RUN_MS_KEY = "signals:analyze:last_run_ms"
LAST_RUN_KEY = "signals:analyze:last_run"  # JSON summary of the last pass (ops, dashboard, tests)
