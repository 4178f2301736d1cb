"""Scoring predictions: metrics (accuracy, nMAE, population distances), stats (bootstrap CIs, paired differences)
and results (a run's stored rows -> the metrics and cost it reports)."""
