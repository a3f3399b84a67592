"""Grading: photo intake, quality gate, ONNX inference, defects and the item grade."""
