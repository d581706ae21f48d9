"""Tier 1: the Ray runtime, one job's run (:mod:`.runner`, :mod:`.jobrunner`), the queue and its
scheduler, the store, and hyper-parameter search."""
