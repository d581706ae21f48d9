"""Tier 1: the Ray runtime, job execution, and (to come) the queue, store and search."""
