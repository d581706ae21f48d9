"""Predictions from trained models: what a model takes (inputs), the predictor and its cache,
micro-batching of concurrent requests, and deployment on Ray Serve (deploy)."""
