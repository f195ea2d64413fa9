"""Zero-shot classification: cosine similarity between aligned ECG embeddings and class-prompt embeddings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from bench.data.errors import DataError
from bench.data.ptbxl import normalise_code


def load_prompts(path: str | Path, lowercase: bool = True) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "prompt file not found", "set zero_shot.prompts=/path/to/prompts.json (code -> description)")
    raw = json.loads(path.read_text())
    return {normalise_code(k): (v.lower() if lowercase else v) for k, v in raw.items()}


def class_prompts(classes: Sequence[str], prompts: dict[str, str], source: str = "prompt file") -> list[str]:
    missing = [c for c in classes if normalise_code(c) not in prompts]
    if missing:
        raise DataError(source, f"no prompt for class(es) {', '.join(missing)}", "add them to the prompt file")
    return [prompts[normalise_code(c)] for c in classes]


def cosine_scores(ecg: np.ndarray, text: np.ndarray) -> np.ndarray:
    e = ecg / np.linalg.norm(ecg, axis=1, keepdims=True).clip(1e-12)
    t = text / np.linalg.norm(text, axis=1, keepdims=True).clip(1e-12)
    return e @ t.T


def top1_decisions(scores: np.ndarray) -> np.ndarray:
    pred = np.zeros_like(scores, dtype=int)
    pred[np.arange(len(scores)), scores.argmax(1)] = 1
    return pred


def zero_shot_predict(aligned: np.ndarray, classes: Sequence[str], prompts: dict[str, str],
                      encode_text: Callable[[list[str]], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(similarities [N, C], top-1 decisions [N, C]) for the records' aligned embeddings."""
    text = encode_text(class_prompts(classes, prompts))
    scores = cosine_scores(aligned, text)
    return scores, top1_decisions(scores)
