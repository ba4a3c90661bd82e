"""Deployment: ONNX export with embedded metadata and parity checks, and static INT8 quantisation."""
