"""Adapters for other ECG representation-learning methods, and the control encoders."""
