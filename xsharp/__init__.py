"""xsharp: a turnkey deep-learning stack for on-prem GPU clusters."""

__version__ = "0.1.0"
