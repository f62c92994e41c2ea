"""Metrics: the history of what the monitor samples (history.py)."""
