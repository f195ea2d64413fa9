"""MERIT (masked ECG modelling + ECG-text InfoNCE), rebuilt from the paper; no official code exists."""
