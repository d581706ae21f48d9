"""Trained models out of the appliance: ONNX export (``onnx.py``) built from per-module and
per-feature-step exporters (``modules.py``, ``features.py``) over one graph builder (``graph.py``)."""
