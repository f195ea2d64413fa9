"""Text generation: answer-only loss masking, prefix shape, trainable weights, metrics on hand-checked
examples, the QA loader, the interpretation builder, and seeded reproducibility (tiny LLM)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from bench.suites import textgen
from bench.suites.textgen import Example, PrefixLM, instruction_set, interpretation, load_qa_json, train_and_generate
from bench.suites.textmetrics import bleu, meteor, rouge_l

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


@pytest.fixture(scope="module")
def tiny_llm():
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from merit.text import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    tok.chat_template = ("{% for m in messages %}[CLS] user : {{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %} assistant :{% endif %}")
    tok.eos_token = "[SEP]"
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return tok, LlamaForCausalLM(cfg)


def _model(tiny_llm, emb_dim=8, n_prefix=3):
    import copy

    tok, llm = tiny_llm
    return PrefixLM(tok, copy.deepcopy(llm), emb_dim, n_prefix, LORA)


EXAMPLES = [Example("1", "Describe this ECG.", "sinus rhythm, normal ECG"),
            Example("2", "Interpret the electrocardiogram.", "atrial fibrillation with rapid ventricular response")]


def test_loss_is_on_answer_tokens_only(tiny_llm):
    model = _model(tiny_llm)
    tok = model.tok
    inputs, mask, labels = model.batch(EXAMPLES, torch.randn(2, 8), max_length=600)
    for i, ex in enumerate(EXAMPLES):
        answer = tok(ex.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        supervised = labels[i][labels[i] != -100].tolist()
        assert supervised == answer
        n = int(mask[i].sum())
        assert labels[i, -len(answer):].tolist() == answer and (labels[i, : inputs.shape[1] - len(answer)] == -100).all()
        assert n == model.n_prefix + len(model.prompt_ids(ex.instruction)) + len(answer)


def test_bounded_memory_loss_equals_the_llm_labels_loss_with_the_same_gradients(tiny_llm, monkeypatch):
    """Answer-position logits in chunks (three rows here, so several chunks), decoder layers recomputed in the
    backward pass, LoRA dropout on: the loss and every gradient equal those of the LLM's own ``labels=`` loss
    over the full [batch, sequence, vocabulary] logits."""
    monkeypatch.setattr(textgen, "LOSS_CHUNK", 3)
    lora = {**LORA, "dropout": 0.3}
    tok, llm = tiny_llm
    model = PrefixLM(tok, __import__("copy").deepcopy(llm), 8, 3, lora)
    with torch.no_grad():  # LoRA's B starts at zero; make its path count
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    model.train()
    emb = torch.randn(2, 8)

    def loss_and_grads(fn):
        model.zero_grad()
        torch.manual_seed(5)
        loss = fn()
        loss.backward()
        return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    def full_logits_loss():
        inputs, mask, labels = model.batch(EXAMPLES, emb, 600)
        return model.llm(inputs_embeds=inputs, attention_mask=mask, labels=labels).loss

    ref, ref_grads = loss_and_grads(full_logits_loss)
    ours, our_grads = loss_and_grads(lambda: model.loss(EXAMPLES, emb, 600))
    assert ours == pytest.approx(ref, rel=1e-6)
    assert our_grads.keys() == ref_grads.keys() and any("lora_A" in n for n in our_grads)
    for name, g in ref_grads.items():
        torch.testing.assert_close(our_grads[name], g, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def test_prefix_tokens_come_from_the_projector(tiny_llm):
    model = _model(tiny_llm, emb_dim=8, n_prefix=3)
    emb = torch.randn(2, 8)
    inputs, mask, _ = model.batch(EXAMPLES, emb, max_length=600)
    prefix = model.projector(emb).view(2, 3, -1)
    assert prefix.shape == (2, 3, 32)
    for i in range(2):
        start = int((mask[i] == 0).sum())  # left padding
        torch.testing.assert_close(inputs[i, start:start + 3], prefix[i])
    text_only = _model(tiny_llm, emb_dim=None)
    assert text_only.n_prefix == 0 and text_only.projector is None


def test_only_lora_and_norms_of_the_llm_are_trainable(tiny_llm):
    model = _model(tiny_llm)
    trainable = [n for n, p in model.llm.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "norm" in n.split(".")[-2] for n in trainable)
    assert any("lora_A" in n for n in trainable) and any("lora_B" in n for n in trainable)
    frozen = dict(model.llm.named_parameters())
    assert not any(p.requires_grad for n, p in frozen.items() if n.endswith("q_proj.base_layer.weight"))
    assert not model.llm.get_input_embeddings().weight.requires_grad
    assert all(p.requires_grad for p in model.projector.parameters())


def test_seeded_training_and_greedy_generation_reproduce(tiny_llm, monkeypatch):
    import copy

    tok, llm = tiny_llm
    monkeypatch.setattr(textgen, "load_llm", lambda kind, path=None: (tok, copy.deepcopy(llm)))
    cfg = {"llm": {"kind": "smollm2"}, "n_prefix": 2, "lora": LORA, "weight_decay": 0.05, "lr": 1e-3, "min_lr": 1e-5,
           "betas": [0.9, 0.95], "batch_size": 2, "epochs": 2, "max_length": 600, "max_new_tokens": 5, "greedy": True,
           "temperature": 0.6, "top_p": 0.9}
    emb = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    ex = EXAMPLES * 2
    a = train_and_generate(cfg, emb, ex, emb[:2], EXAMPLES, seed=3)
    b = train_and_generate(cfg, emb, ex, emb[:2], EXAMPLES, seed=3)
    assert a == b and len(a[0]) == 2 and len(a[1]) == 4  # predictions, per-step losses


def test_metric_wrappers_on_hand_checked_examples(tmp_path):
    assert bleu(["the ecg is normal"], ["the ecg is normal"])["bleu"] == pytest.approx(100.0)
    r = rouge_l(["sinus rhythm"], ["sinus rhythm normal ecg"])
    assert r["rouge_l_recall"] == pytest.approx(50.0) and r["rouge_l_f1"] == pytest.approx(100 * 2 * 1 * 0.5 / 1.5)
    value = meteor(["atrial fibrillation with fast ventricular rate"], ["atrial fibrillation with rapid ventricular response"], tmp_path)
    assert value == pytest.approx(62.5, abs=0.05)  # WordNet 3.0 (the verified offline value 0.625)


def test_qa_loader_reads_medtvt_format_and_names_bad_items(tmp_path):
    good = [{"ecg_id": 17, "question": "What rhythm?", "answer": "sinus rhythm"},
            {"id": "18", "instruction": "Describe.", "answer": ["atrial fibrillation"]}]
    (tmp_path / "qa.json").write_text(json.dumps(good))
    items = load_qa_json(tmp_path / "qa.json")
    assert [(e.record_id, e.instruction, e.answer) for e in items] == [("17", "What rhythm?", "sinus rhythm"),
                                                                       ("18", "Describe.", "atrial fibrillation")]
    (tmp_path / "bad.json").write_text(json.dumps([{"ecg_id": 1, "text": "x"}]))
    from bench.data.errors import DataError

    with pytest.raises(DataError, match="item 0 lacks"):
        load_qa_json(tmp_path / "bad.json")


@pytest.mark.shared_data
def test_interpretation_from_official_statements(shared):
    st = pd.read_csv(shared / "meta/scp_statements.csv", index_col=0)
    names = {"NORM": "normal ECG", "CD": "conduction disturbance", "MI": "myocardial infarction"}
    assert interpretation({"NORM": 100.0, "SR": 0.0}, st, names) == "Rhythm: sinus rhythm. Conduction: normal. Impression: normal ECG."
    text = interpretation({"IMI": 100.0, "LAFB": 100.0, "ABQRS": 0.0, "STACH": 0.0}, st, names)
    assert text.startswith("Rhythm: sinus tachycardia. Conduction: left anterior fascicular block.")
    assert "inferior myocardial infarction" in text and text.endswith("conduction disturbance, myocardial infarction.")
    records = pd.DataFrame({"scp_codes": ["{'NORM': 100.0}"], "label_text": ["normal ECG"]}, index=["5"])
    (ex,) = instruction_set(records, ["5"], ["A", "B"], st, names)
    assert ex.instruction in ("A", "B") and ex.answer.endswith("Impression: normal ECG.")


def test_textgen_intervals_resample_test_items_and_seeds():
    from bench.suites.textmetrics import ITEM_METRICS, hierarchical_bootstrap

    refs = np.array(["sinus rhythm normal ecg", "atrial fibrillation", "left bundle branch block", "sinus bradycardia"] * 5)

    def seed(offset: float, spread: float) -> dict:
        values = offset + spread * np.linspace(-1, 1, len(refs))
        return {"hyps": refs.copy(), "refs": refs, **{k: values.copy() for k in ITEM_METRICS}}

    flat = hierarchical_bootstrap([seed(50, 0), seed(50, 0), seed(50, 0)], 200)
    assert np.allclose(flat["meteor"], 50) and np.allclose(flat["bleu"], 100)  # no item or seed spread: no width
    items = hierarchical_bootstrap([seed(50, 10)] * 3, 400)["meteor"]
    assert items.std() > 1  # one seed repeated: the interval still carries the test-set sampling
    seeds = hierarchical_bootstrap([seed(40, 0), seed(50, 0), seed(60, 0)], 400)["meteor"]
    assert set(np.round(seeds, 6)) <= {round(v, 6) for v in np.linspace(40, 60, 7)} and seeds.std() > 3  # means of drawn seeds
