"""Evaluation suites: pure computations on cached embeddings and labels (no MLflow, no encoders)."""
