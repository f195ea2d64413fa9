"""Regenerate the golden conformance fixtures in tests/golden/ from the upstream repositories' own code.

Usage (each checkout at the commit named in its model card; nothing of theirs is copied into bench):

    python scripts/golden/regenerate.py --stmem /src/ST-MEM --merl /src/MERL-ICML2024 --dbeta /src/D-BETA \
        --ecgfounder /src/ECGFounder --ecgjepa /src/ECG_JEPA \
        --hubert-ecg /src/HuBERT-ECG/code \
        --melp /src/MELP --fairseq-signals-backbone /src/fairseq-signals/src [--pythonpath /dir/with/einops] \
        --xresnet1d /src/ecg_ptbxl_benchmarking/code --ecgfm-ked /src/ECGFM-KED \
        --s4 /src/ecg-fm-benchmarking/code --ecg-cpc /src/ecg-fm-benchmarking/code \
        --heartlang /src/HeartLang --clef /src/ecg-foundation-model --out tests/golden

For each repository it builds the official model classes from that checkout in a reduced width/depth
(the same classes, so every key and every operation is upstream's), gives every weight a random value,
saves the checkpoint in every file form that repository's training script writes, and records
upstream's outputs on a few synthetic millivolt records, with upstream's own preprocessing, and on a
few prompt lines: ``<name>/expected.npz`` (embedding, aligned, text) plus ``case.json`` (the bench options that
describe the reduced model, which file forms to load, and the hash of the records, which
scripts/golden/synthetic.py generates for this script and the tests alike).

The text towers are tiny Hugging Face models written here (a BERT for MERL, a T5 encoder for D-BETA)
sharing one small word-piece vocabulary built from the prompts, because the real MedCPT / flan-t5
weights are not reachable offline; upstream code loads them from the folder as it would the real ones.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from synthetic import SEED, mimic_tables, signals, signals_sha256, tables_sha256  # scripts/golden/synthetic.py, shared with the tests

PROMPTS = ["Atrial fibrillation with rapid ventricular response", "normal sinus rhythm",
           "Left bundle branch block", "ST elevation in anterior leads"]


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Every weight a random value (upstream inits leave some at 0/1, which would hide key mix-ups)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.5 if p.ndim == 1 else 1.0 / math.sqrt(p.shape[-1] if p.ndim > 1 else 1)
            p.copy_(torch.randn(p.shape, generator=g) * scale + (1.0 if name.endswith("weight") and p.ndim == 1 else 0.0))
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)


def write_text_models(out: Path) -> dict[str, Path]:
    """A tiny BERT (MERL's MedCPT stand-in) and a tiny T5 encoder (D-BETA's flan-t5 stand-in) with one vocabulary."""
    from transformers import BertConfig, BertModel, BertTokenizer, T5Config, T5EncoderModel

    words = sorted({w for p in PROMPTS for w in p.lower().split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    paths = {}
    for name in ("bert", "t5"):
        folder = out / "text" / name
        paths[name] = folder
        if (folder / "config.json").is_file():
            continue  # written by an earlier run (D-BETA runs in its own process, see main)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
        BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
        torch.manual_seed(SEED)
        if name == "bert":
            model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=64, max_position_embeddings=512))
        else:
            model = T5EncoderModel(T5Config(vocab_size=len(vocab), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
                                            feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False))
        model.save_pretrained(folder)  # the stand-in's config; the weights that count are the checkpoint's
    return paths


def forget_modules(*packages: str) -> None:
    """Drop a checkout's top-level packages (ST-MEM and D-BETA both name theirs ``models``)."""
    for name in list(sys.modules):
        if name.split(".")[0] in packages:
            del sys.modules[name]


def save_case(folder: Path, case: dict, arrays: dict) -> None:
    """case.json and upstream's outputs; the input records are regenerated from their hash's generator, not stored."""
    case = {**case, "signals_sha256": signals_sha256(signals(fs=case.get("signals_fs", 500)))}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    np.savez_compressed(folder / "expected.npz", **{k: np.asarray(v) for k, v in arrays.items()})


def stmem(root: Path, out: Path) -> None:
    six = types.ModuleType("torch._six")  # util/misc.py imports inf from a module newer torch dropped
    six.inf = math.inf
    sys.modules.setdefault("torch._six", six)
    sys.path.insert(0, str(root))
    from models.st_mem import ST_MEM
    from util import misc
    from util.transforms import HighpassFilter, LowpassFilter, NCrop, Resample, Standardize

    # upstream's heads are 64 wide whatever the width (the official 768 = 12 x 64): a reduced model keeps that
    model = ST_MEM(seq_len=2250, patch_size=75, num_leads=12, embed_dim=128, depth=2, num_heads=2, decoder_embed_dim=32,
                   decoder_depth=1, decoder_num_heads=4, mlp_ratio=2).eval()
    randomise(model, 1)
    folder = out / "stmem"
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_name": "st_mem_vit_base", "reduced": True}
    misc.save_model(config, str(folder / "checkpoint-0.pth"), 0, model)  # main_pretrain: every 20 epochs
    misc.save_model(config, str(folder / "encoder.pth"), 0, model.encoder)  # main_pretrain: the final encoder
    x = signals()
    transforms = [NCrop(2250, 3), HighpassFilter(250, 0.67), LowpassFilter(250, 40), Standardize(axis=[-1, -2])]
    embs = []
    for record in x:
        y = Resample(target_fs=250)(record, fs=500)  # util/dataset.ECGDataset: resample, then eval_transforms
        for tf in transforms:
            y = tf(y)
        crops = torch.as_tensor(np.ascontiguousarray(y), dtype=torch.float32)  # [3, 12, 2250]
        with torch.no_grad():
            embs.append(model.encoder(crops).mean(0).numpy())  # engine_downstream: mean over the crops
    save_case(folder, {"method": "stmem", "fs": 500,
                       "options": {"preset": "official", "width": 128, "depth": 2, "heads": 2, "mlp": 256,
                                   "dec_width": 32, "dec_depth": 1, "dec_heads": 4},
                       "files": ["encoder.pth", "checkpoint-0.pth"]},
              {"embedding": np.stack(embs)})
    embs = []  # 15 s records: the whole record resampled, NCrop's three crops spread over all of it (stmem_15s)
    for record in long_records():
        y = Resample(target_fs=250)(record, fs=500)
        for tf in transforms:
            y = tf(y)
        with torch.no_grad():
            embs.append(model.encoder(torch.as_tensor(np.ascontiguousarray(y), dtype=torch.float32)).mean(0).numpy())
    save_long_case(out / "stmem_15s", "stmem", {}, {"embedding": np.stack(embs)})
    sys.path.remove(str(root))
    forget_modules("models", "util")


def _merl_builder(root: Path, vit_width: int):
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))  # imported, never used
    sys.path.insert(0, str(root / "utils"))
    import resnet1d
    import utils_builder
    import vit1d

    def vit_tiny(num_leads, **kw):
        return vit1d.ViT(num_leads=num_leads, num_classes=1, seq_len=5000, patch_size=50, width=vit_width, depth=2, heads=2,
                         mlp_dim=128)

    def resnet18():  # upstream's ResNet and BasicBlock, channels 16-128 instead of 64-512 to keep the file small
        net = resnet1d.ResNet(resnet1d.BasicBlock, [2, 2, 2, 2])
        net.in_channels = 16
        net.conv1 = torch.nn.Conv1d(12, 16, kernel_size=7, stride=2, padding=3, bias=False)
        net.bn1 = torch.nn.BatchNorm1d(16)
        net.layer1 = net._make_layer(resnet1d.BasicBlock, 16, 2, stride=1)
        net.layer2 = net._make_layer(resnet1d.BasicBlock, 32, 2, stride=2)
        net.layer3 = net._make_layer(resnet1d.BasicBlock, 64, 2, stride=2)
        net.layer4 = net._make_layer(resnet1d.BasicBlock, 128, 2, stride=2)
        net.linear = torch.nn.Linear(128, 10)
        return net

    utils_builder.vit_tiny = vit_tiny
    utils_builder.ResNet18 = resnet18
    return utils_builder


def _merl_model(builder, backbone: str, text: dict[str, Path]) -> torch.nn.Module:
    """utils_builder.ECGCLIP with the reduced sizes of the merl cases (32-wide projections, the text side to 32)."""
    config = {"ecg_model": backbone, "num_leads": 12, "text_model": str(text["bert"]),
              "projection_head": {"mlp_hidden_size": 32, "projection_size": 32}}
    model = builder.ECGCLIP(config)
    if backbone == "resnet18":  # the reduced ResNet ends in 128 channels
        model.downconv = torch.nn.Conv1d(128, 32, kernel_size=1)
    model.proj_t = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.GELU(), torch.nn.Linear(32, 32))  # 768 -> 32
    return model


def _merl_embedding(model: torch.nn.Module, backbone: str, ecg: torch.Tensor) -> torch.Tensor:
    """The ECG encoder's embedding as MERL's finetune models take it (the ResNet's: global average of layer4,
    finetune/models/resnet1d.py)."""
    return model.ecg_encoder(ecg).mean(-1) if backbone == "resnet18" else model.ecg_encoder(ecg)


def merl(root: Path, out: Path, text: dict[str, Path]) -> None:
    builder = _merl_builder(root, vit_width=128)  # two 64-wide heads, as upstream's heads are 64 wide
    x = signals()
    for backbone, folder_name, seed in (("vit_tiny", "merl_vit", 2), ("resnet18", "merl_resnet18", 3)):
        model = _merl_model(builder, backbone, text)
        model.eval()
        if not hasattr(model.tokenizer, "batch_encode_plus"):  # removed in transformers 5: the same call
            model.tokenizer.batch_encode_plus = lambda batch_text_or_text_pairs, **kw: model.tokenizer(batch_text_or_text_pairs, **kw)
        randomise(model, seed)
        folder = out / folder_name
        folder.mkdir(parents=True, exist_ok=True)
        name = f"merl_{backbone}"
        torch.save(model.ecg_encoder.state_dict(), folder / f"{name}_final_encoder.pth")  # utils_trainer.py
        torch.save(model.state_dict(), folder / f"{name}_final_total.pth")
        ddp = {"module." + k: v for k, v in model.state_dict().items()}  # self.model is DDP in the trainer
        optimizer = adamw_after_one_step(model, lr=1.0e-3, weight_decay=1.0e-8)  # pretrain/main.py with config.yaml's values
        torch.save({"epoch": 3, "model_state_dict": ddp, "optimizer_state_dict": optimizer.state_dict()},  # save_checkpoints
                   folder / f"{name}_3_ckpt.pth")
        ecgs = []
        for record in x:  # finetune/finetune_dataset.py (ptbxl branch): first 5000, min-max, swap aVL/aVF
            ecg = record[:, :5000].astype(np.float64)
            ecg = (ecg - np.min(ecg)) / (np.max(ecg) - np.min(ecg) + 1e-8)
            ecg = torch.from_numpy(ecg).float()
            ecg[[4, 5]] = ecg[[5, 4]]
            ecgs.append(ecg)
        ecgs = torch.stack(ecgs)
        with torch.no_grad():
            emb = _merl_embedding(model, backbone, ecgs)
            aligned = torch.nn.functional.normalize(model.ext_ecg_emb(ecgs), dim=-1)
            texts = []
            for p in PROMPTS:  # utils/zeroshot_val.get_class_emd
                tok = model._tokenize([p.lower()])
                t = model.proj_t(model.get_text_emb(tok.input_ids, tok.attention_mask))
                texts.append((t / t.norm(dim=-1, keepdim=True))[0])
        options = {"preset": "official" if backbone == "vit_tiny" else "official_resnet18", "proj_dim": 32,
                   "text": {"kind": "medcpt", "path": "text/bert", "pooling": "pooler", "lowercase": True, "frozen": True}}
        if backbone == "vit_tiny":
            options.update(width=128, depth=2, heads=2, mlp=128)
        else:
            options.update(resnet_widths=[16, 32, 64, 128])
        save_case(folder, {"method": "merl", "fs": 500, "options": options, "prompts": PROMPTS,
                           "files": [f"{name}_final_total.pth", f"{name}_3_ckpt.pth"],
                           "encoder_only_files": [f"{name}_final_encoder.pth"]},
                  {"embedding": emb.numpy(), "aligned": aligned.numpy(), "text": torch.stack(texts).numpy()})
    sys.path.remove(str(root / "utils"))


def dbeta(root: Path, out: Path, text: dict[str, Path]) -> None:
    import transformers.models.t5.modeling_t5 as t5
    from transformers import AutoTokenizer, T5EncoderModel

    t5_model = T5EncoderModel.from_pretrained(text["t5"])
    original = t5.T5EncoderModel.from_pretrained
    t5.T5EncoderModel.from_pretrained = classmethod(lambda cls, name, *a, **k: t5_model)  # "google/flan-t5-base"
    sys.path.insert(0, str(root))
    try:
        from models.dbeta import DBETA
        from models.processor import get_ecg_feats

        cfg = json.loads((root / "configs" / "config.json").read_text())["model"]
        cfg.update(encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=2,
                   conv_feature_layers="[(32, 2, 2)] * 4", conv_pos=8, conv_pos_groups=2, vocab_size=64, hidden_dim=32,
                   num_layers=1, num_heads=2, num_top_layer=1, mem_decoder_hidden_dim=32, mem_decoder_num_layers=1,
                   mem_decoder_num_heads=2)
        model = DBETA(types.SimpleNamespace(**cfg)).eval()
    finally:
        t5.T5EncoderModel.from_pretrained = original
    randomise(model, 4)
    folder = out / "dbeta"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"cfg": {"model": cfg}, "model": model.state_dict()}, folder / "checkpoint_best.pt")  # fairseq-style
    x = signals()
    tokenizer = AutoTokenizer.from_pretrained(text["t5"])
    with torch.no_grad():
        emb = get_ecg_feats(model, torch.as_tensor(x[:, :, :5000]))  # models/processor.py: raw 500 Hz, 10 s
        texts = []
        for p in PROMPTS:  # models/dbeta.forward: T5 on the ids (no attention mask), proj, first-token pooler
            ids = tokenizer([p.lower().strip()], return_tensors="pt").input_ids
            h = model.multi_modal_language_proj(model.language_encoder(input_ids=ids)[0])
            texts.append(model.unimodal_language_pooler(h)[0])
    save_case(folder, {"method": "d_beta", "fs": 500, "prompts": PROMPTS,
                       "options": {"preset": "official", "conv_dim": 32, "width": 32, "depth": 2, "heads": 2, "ffn": 64,
                                   "conv_pos": 8, "conv_pos_groups": 2,
                                   "text": {"kind": "t5", "path": "text/t5", "pooling": "first_unpadded", "lowercase": True,
                                            "frozen": True}},
                       "files": ["checkpoint_best.pt"]},
              {"embedding": emb.numpy(), "aligned": emb.numpy(), "text": torch.stack(texts).numpy()})
    sys.path.remove(str(root))


def ecgfounder(root: Path, out: Path) -> None:
    """Net1D from net1d.py (the official 12-lead design for the parameter count; a reduced one for the file) and
    dataset.py's preprocessing (util.filter_bandpass, then the z-score over the whole record), on 10 s records and on
    whole 15 s WFDB records (ecgfounder_15s; dataset.py's own __getitem__ cannot run: it names an undefined
    ``sample_rate``, so its steps are called here in its order)."""
    try:
        import h5py  # noqa: F401  (util.py imports it, for nothing used here)
    except ImportError:
        sys.modules["h5py"] = types.ModuleType("h5py")
    sys.path.insert(0, str(root))
    from net1d import Net1D
    from util import filter_bandpass

    official = Net1D(in_channels=12, base_filters=64, ratio=1, filter_list=[64, 160, 160, 400, 400, 1024, 1024],
                     m_blocks_list=[2, 2, 2, 3, 3, 4, 4], kernel_size=16, stride=2, groups_width=16, verbose=False, use_bn=False,
                     use_do=False, n_classes=150)  # finetune_model.ft_12lead_ECGFounder
    model = Net1D(in_channels=12, base_filters=8, ratio=1, filter_list=[8, 16, 32], m_blocks_list=[1, 2, 1], kernel_size=8, stride=2,
                  groups_width=8, verbose=False, use_bn=False, use_do=False, n_classes=4, return_features=True).eval()
    randomise(model, 5)
    folder = out / "ecgfounder"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict()}, folder / "12_lead_ECGFounder.pth")  # the Hugging Face file's form
    x = signals()
    embs = []
    for record in x:  # dataset.py __getitem__: filter_bandpass(data, 500), then z_score_normalization
        data = filter_bandpass(record.astype(np.float64), 500)
        data = (data - np.mean(data)) / (np.std(data) + 1e-8)
        with torch.no_grad():
            embs.append(model(torch.FloatTensor(data)[None])[1][0].numpy())
    save_case(folder, {"method": "ecgfounder", "fs": 500,
                       "options": {"preset": "official", "base_filters": 8, "filters": [8, 16, 32], "blocks": [1, 2, 1], "kernel": 8,
                                   "groups_width": 8, "n_classes": 4},
                       "files": ["12_lead_ECGFounder.pth"],
                       "upstream_official_params": sum(p.numel() for p in official.parameters())},
              {"embedding": np.stack(embs)})
    import tempfile

    import wfdb

    embs = []  # 15 s WFDB records: dataset.py reads the whole record with wfdb.rdsamp, filters and scales all of it
    with tempfile.TemporaryDirectory() as tmp:
        for path in write_long_records(Path(tmp)):
            data = np.nan_to_num(wfdb.rdsamp(str(path))[0]).T
            data = filter_bandpass(data, 500)
            data = (data - np.mean(data)) / (np.std(data) + 1e-8)
            with torch.no_grad():
                embs.append(model(torch.FloatTensor(data)[None])[1][0].numpy())
    save_long_case(out / "ecgfounder_15s", "ecgfounder", {"read_as": "wfdb"}, {"embedding": np.stack(embs)})
    sys.path.remove(str(root))
    forget_modules("net1d", "util")


def clef(root: Path, out: Path) -> None:
    """CLEF as script/pretrain.py trains and saves it: upstream's Net1D (clef/baselines/models/CLEF.py, ``use_bn=False,
    use_do=False``, ``dense = Identity``) inside its ``ContrastiveModel`` with configs/exp/exp_pretrain.yaml, one real
    training step of its own ``training_step`` (SimCLR with the metadata-weighted loss) under a Lightning ``Trainer``
    with the script's ModelCheckpoint and EarlyStopping callbacks, then ``trainer.save_checkpoint`` (the released file's
    form). Official sizes from ``create_net1d_by_size`` for the parameter counts; a reduced Net1D for the file.
    Upstream's outputs: lead II of each raw 500 Hz mV record read as MIMICIVECGContrastiveDataset reads it (wfdb, the
    first input_len samples), contrastive_dataloader.bandpass_filter(0.67, 40, fs=500), Normalize("z-score"), then
    ContrastiveModel.forward; on the 10 s records and on 15 s WFDB records (clef_15s)."""
    import tempfile

    import lightning
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from omegaconf import OmegaConf

    for name in ("pywt", "neurokit2"):  # imported by the augmentation and MIMIC modules for what the fixture never runs
        stub_module(name)
    sys.path.insert(0, str(root))
    from clef.baselines.models.CLEF import Net1D, create_net1d_by_size
    from clef.data.contrastive_dataloader import Normalize, bandpass_filter
    from clef.data.mimiciv_dataloader import MIMICIVECGContrastiveDataset
    from clef.lightning.lightning_contrastive import ContrastiveModel

    params = {f"official_{size}": sum(p.numel() for p in create_net1d_by_size("cpu", size, in_channels=1).parameters())
              for size in ("small", "medium", "large")}
    torch.manual_seed(SEED)
    backbone = Net1D(in_channels=1, base_filters=8, ratio=0.5, filter_list=[8, 16, 16], m_blocks_list=[1, 1, 1], kernel_size=8,
                     stride=2, groups_width=4, verbose=False, use_bn=False, use_do=False, n_classes=1000)
    backbone.dense = torch.nn.Identity()  # create_net1d_by_size
    randomise(backbone, 13)
    exp = OmegaConf.load(root / "configs" / "exp" / "exp_pretrain.yaml")
    module = ContrastiveModel(backbone, OmegaConf.create({"model_size": "tiny"}), exp)

    x = signals()
    batch_signals = torch.tensor(np.stack([np.stack([r[1], r[2]]) for r in x[:, :, :5000]]), dtype=torch.float32)
    metadata = torch.tensor(np.random.default_rng(SEED).uniform(0, 1, (len(x), 11)), dtype=torch.float32)

    class Pairs(torch.utils.data.Dataset):  # MIMICIVECGContrastiveDataset.__getitem__'s tuple
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return batch_signals[i], torch.tensor([1, 1]), ["II", "III"], [500, 500], metadata[i]

    folder = out / "clef"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = lightning.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                                    default_root_dir=tmp, callbacks=[
                                        ModelCheckpoint(dirpath=tmp, filename=exp.ckpt_name, save_top_k=1, monitor=exp.monitor_metric),
                                        EarlyStopping(monitor=exp.monitor_metric, patience=exp.patience, mode=exp.patience_mode,
                                                      min_delta=exp.patience_delta)])
        trainer.fit(module, torch.utils.data.DataLoader(Pairs(), batch_size=len(x)))
        trainer.save_checkpoint(folder / "clef_tiny.ckpt")
    module.eval()

    def upstream(lead_ii: np.ndarray) -> np.ndarray:
        seg = bandpass_filter(lead_ii[None].astype(np.float64), 0.67, 40, fs=500)
        seg, _ = Normalize(method="z-score").apply(seg[0])
        with torch.no_grad():
            return module(torch.tensor(seg, dtype=torch.float32)[None, None])[0].numpy()

    options = {"preset": "tiny", "base_filters": 8, "ratio": 0.5, "filters": [8, 16, 16], "blocks": [1, 1, 1], "kernel": 8,
               "groups_width": 4}
    save_case(folder, {"method": "clef", "fs": 500, "options": options, "files": ["clef_tiny.ckpt"],
                       "upstream_official_params": params},
              {"embedding": np.stack([upstream(r[1, :5000]) for r in x])})
    reader = types.SimpleNamespace(leads=None)
    with tempfile.TemporaryDirectory() as tmp:
        reader.data_path = tmp
        paths = write_long_records(Path(tmp))
        embs = [upstream(MIMICIVECGContrastiveDataset._read_partial_record(reader, p.name, 0, 5000)[:, 1]) for p in paths]
    save_long_case(out / "clef_15s", "clef", {"read_as": "wfdb"}, {"embedding": np.stack(embs)})
    sys.path.remove(str(root))
    forget_modules("clef", "pywt", "neurokit2")


def challenge(root: Path, out: Path) -> None:
    """The PhysioNet/CinC Challenge metric as physionetchallenges/evaluation-2021's evaluate_model.py computes it (its
    load_weights and compute_challenge_metric on its weights.csv), on seeded random labels and decisions over bench's
    cinc2021 and cpsc2018 label spaces, each class placed in the challenge's class that holds its SNOMED code (a class the
    challenge does not score is left out, as a label outside the scored table is)."""
    import yaml

    sys.path.insert(0, str(root))
    from evaluate_model import compute_challenge_metric, load_weights

    classes, weights = load_weights(str(root / "weights.csv"))
    rng = np.random.default_rng(SEED)
    arrays, case = {}, {"cases": []}
    for name in ("cinc2021", "cpsc2018"):
        vocabulary = yaml.safe_load((Path(__file__).parents[2] / "configs" / "labels" / f"{name}.yaml").read_text())
        snomed = [str(c["snomed"]) for c in vocabulary["classes"]]
        y_true = rng.random((300, len(snomed))) < 0.15
        y_pred = np.where(rng.random(y_true.shape) < 0.7, y_true, rng.random(y_true.shape) < 0.15)
        labels, outputs = (np.zeros((300, len(classes)), dtype=bool) for _ in range(2))
        for k, code in enumerate(snomed):
            for j, group in enumerate(classes):
                if code in group:
                    labels[:, j] |= y_true[:, k]
                    outputs[:, j] |= y_pred[:, k]
        arrays[f"{name}_true"], arrays[f"{name}_pred"] = y_true, y_pred
        case["cases"].append({"vocabulary": name, "score": compute_challenge_metric(weights, labels, outputs, classes, {"426783006"})})
    folder = out / "metrics" / "challenge"  # not an encoder case (tests/test_metrics.py reads it)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    np.savez_compressed(folder / "expected.npz", **arrays)
    sys.path.remove(str(root))
    forget_modules("evaluate_model", "helper_code")


def fastai_v1_shim() -> None:
    """fastai v1, which the xresnet1d files star-import, replaced by the few names they take from it."""
    import enum
    import inspect
    import re
    import typing

    import torch.nn as nn

    def bn_drop_lin(n_in, n_out, bn=True, p=0.0, actn=None):  # fastai v1 layers.bn_drop_lin
        layers = [nn.BatchNorm1d(n_in)] if bn else []
        if p != 0:
            layers.append(nn.Dropout(p))
        layers.append(nn.Linear(n_in, n_out))
        return layers + ([actn] if actn is not None else [])

    class Flatten(nn.Module):  # fastai v1 layers.Flatten
        def forward(self, x):
            return x.view(x.size(0), -1)

    stub_module("fastai.layers", bn_drop_lin=bn_drop_lin, Flatten=Flatten)
    stub_module("fastai.core", listify=lambda p: list(p) if isinstance(p, (list, tuple)) else [p], Optional=typing.Optional,
                Collection=typing.Collection, Floats=float, inspect=inspect, re=re, Enum=enum.Enum)
    sys.modules["fastai.layers"].__all__ = ["bn_drop_lin", "Flatten"]
    sys.modules["fastai.core"].__all__ = ["listify", "Optional", "Collection", "Floats", "inspect", "re", "Enum"]


def xresnet1d(root: Path, out: Path) -> None:
    """xresnet1d101 from helme/ecg_ptbxl_benchmarking code/models/xresnet1d.py (the official design for the parameter
    count; a reduced one for the file), on 100 Hz records cut as fastai_model.py cuts them at test time (2.5 s windows
    every 1.25 s); per window the head's concat pooling, averaged over the windows (bench's rule for views)."""
    fastai_v1_shim()
    sys.path.insert(0, str(root))
    from models.xresnet1d import XResNet1d, ResBlock, xresnet1d101

    official = xresnet1d101(num_classes=71, input_channels=12, kernel_size=5, ps_head=0.5, lin_ftrs_head=[128])
    model = XResNet1d(ResBlock, 4, [1, 1], input_channels=12, num_classes=4, kernel_size=5, ps_head=0.5, lin_ftrs_head=[128],
                      stem_szs=(8, 8, 64), widen=0.125).eval()  # upstream's blocks start from 64 // 4 channels
    randomise(model, 7)
    folder = out / "xresnet1d101"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "xresnet1d101.pth")
    x = torch.from_numpy(signals(fs=100))
    windows = [x[..., s:s + 250] for s in range(0, 751, 125)]  # TimeseriesDatasetCrops(chunk 250, stride 125)
    with torch.no_grad():
        body = torch.nn.Sequential(*list(model)[:-1])  # upstream's own modules, without the head's linear part
        pooled = [model[-1][1](model[-1][0](body(w))) for w in windows]
    save_case(folder, {"method": "xresnet1d101", "fs": 100, "signals_fs": 100,
                       "options": {"preset": "official", "layers": [1, 1], "width": 8, "stem": [8, 8, 64], "n_classes": 4},
                       "files": ["xresnet1d101.pth"], "upstream_official_params": sum(p.numel() for p in official.parameters())},
              {"embedding": torch.stack(pooled).mean(0).numpy()})
    sys.path.remove(str(root))
    forget_modules("models", "fastai")


def xresnet1d_long(root: Path, out: Path, seconds: int | None = None) -> None:
    """The xresnet1d101 case's weights on raw 500 Hz records of ``seconds`` (xresnet1d101_15s, xresnet1d101_10s_500hz),
    as upstream's own scripts take a CPSC2018 record:
    convert_ICBEB.py's ``zoom(channel, .2)`` of each lead and ``store_as_wfdb`` at 100 Hz (read back by wfdb.rdsamp, as
    utils.load_raw_data_icbeb reads records100), then fastai_model.py's test-time chunks (TimeseriesDatasetCrops: starts
    every 125 samples, a chunk shorter than 250 dropped); per window the head's concat pooling, averaged over windows."""
    import tempfile

    import wfdb
    from scipy.ndimage import zoom

    seconds = seconds or LONG_SECONDS
    fastai_v1_shim()
    sys.path.insert(0, str(root))
    sys.path.insert(0, str(root / "utils"))
    from models.xresnet1d import XResNet1d, ResBlock

    model = XResNet1d(ResBlock, 4, [1, 1], input_channels=12, num_classes=4, kernel_size=5, ps_head=0.5, lin_ftrs_head=[128],
                      stem_szs=(8, 8, 64), widen=0.125).eval()
    model.load_state_dict(torch.load(out / "xresnet1d101" / "xresnet1d101.pth", weights_only=True))
    convert = (root / "utils" / "convert_ICBEB.py").read_text()  # its store_as_wfdb, run as upstream wrote it
    store_as_wfdb = {}
    exec(convert[convert.index("def store_as_wfdb"):convert.index("df_reference")], {"wfdb": wfdb}, store_as_wfdb)
    embeddings = []
    with tempfile.TemporaryDirectory() as tmp:
        records = np.round(signals(seconds=seconds) * LONG_GAIN) / LONG_GAIN  # as WFDB / .mat files hold them
        for i, sig in enumerate(records.astype(np.float64)):  # [12, 500 x seconds] as loadmat's sig holds it
            down_sig = np.array([zoom(channel, .2) for channel in sig])
            store_as_wfdb["store_as_wfdb"](str(i), down_sig.T, tmp + "/", 100)
            x = torch.from_numpy(wfdb.rdsamp(f"{tmp}/{i}")[0].T.astype(np.float32))[None]
            n = x.shape[-1]
            starts = [s for s in range(0, n, 125) if min(s + 250, n) - s >= 250]
            with torch.no_grad():
                body = torch.nn.Sequential(*list(model)[:-1])
                pooled = [model[-1][1](model[-1][0](body(x[..., s:s + 250]))) for s in starts]
            embeddings.append(torch.cat(pooled).mean(0))
    name = "xresnet1d101_15s" if seconds == LONG_SECONDS else f"xresnet1d101_{seconds}s_500hz"
    save_long_case(out / name, "xresnet1d101", {"fs": 500, "signals_fs": 500, "seconds": seconds},
                   {"embedding": torch.stack(embeddings).numpy()}, records)
    sys.path.remove(str(root))
    sys.path.remove(str(root / "utils"))
    forget_modules("models", "fastai")


def ecgfm_ked(root: Path, out: Path) -> None:
    """ECGFM-KED's ECG encoder from control-spiderman/ECGFM-KED models/xresnet1d_101.py as main_mimiciv.py builds it (no
    head), saved as main_mimiciv.py saves it ({'ecg_model': state, 'model', 'text_encoder', 'config', 'epoch', ...}) and
    as the reality check's flat ecg_model.* form; on 500 Hz mV records read as MimicivDataset reads them (scipy resample
    to a fifth of the length, NaN -> 0); embedding = mean over time of the encoder output (EcgFmKEDWrapper)."""
    import importlib.util

    from scipy.signal import resample

    fastai_v1_shim()
    spec = importlib.util.spec_from_file_location("ked_xresnet1d_101", root / "models" / "xresnet1d_101.py")
    ked = importlib.util.module_from_spec(spec)  # the file alone: models/__init__ imports the text side
    spec.loader.exec_module(ked)
    official = ked.xresnet1d101(num_classes=105, input_channels=12, kernel_size=5, ps_head=0.5)
    model = ked.XResNet1d(ked.ResBlock, 4, [1, 1, 1, 1], input_channels=12, num_classes=105, kernel_size=5, ps_head=0.5,
                          stem_szs=(8, 8, 64), widen=0.125).eval()
    randomise(model, 8)
    folder = out / "ecgfm_ked"
    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    torch.save({"model": {"tqn.weight": torch.zeros(2, 2)}, "ecg_model": state, "text_encoder": {"bert.weight": torch.zeros(2)},
                "optimizer": {"state": {}, "param_groups": [{"lr": 5e-5}]}, "config": {"ecg_model_name": "xresnet1d_101"},
                "epoch": 3}, folder / "best_valid_all_increase_with_augment_epoch_3.pt")
    torch.save({**{f"ecg_model.{k}": v for k, v in state.items()}, "model.tqn.weight": torch.zeros(2, 2)}, folder / "flat.pt")
    x = signals()
    with torch.no_grad():
        ecg = torch.from_numpy(resample(x, x.shape[-1] // 5, axis=-1)).float()
        emb = model(torch.nan_to_num(ecg)).mean(-1)
    save_case(folder, {"method": "ecgfm_ked", "fs": 500,
                       "options": {"preset": "official", "layers": [1, 1, 1, 1], "widths": [8, 16, 16, 24], "stem": [8, 8, 64],
                                   "text": None},
                       "files": ["best_valid_all_increase_with_augment_epoch_3.pt", "flat.pt"],
                       "upstream_official_params": sum(p.numel() for p in official.parameters())},
              {"embedding": emb.numpy()})
    long = long_records().astype(np.float64)  # 15 s: dataset/cpsc/data_preprocess.py resamples the whole record, keeps 1,000
    with torch.no_grad():
        emb = model(torch.from_numpy(resample(long, long.shape[-1] // 5, axis=-1)[:, :, :1000]).float()).mean(-1)
    save_long_case(out / "ecgfm_ked_15s", "ecgfm_ked", {}, {"embedding": emb.numpy()})
    forget_modules("fastai")


def clinical_ts_windows(x: np.ndarray, fs_data: float, fs_model: float, input_size: float = 2.5) -> list[np.ndarray]:
    """The test-time windows of the reality check's main_lite: chunks of ``input_size`` seconds at the data's own rate
    with stride = chunk (``--stride-fraction-valtest 1.0``; a last partial chunk dropped), each resampled to the
    model's rate by clinical_ts' own ``Resample`` transform (resampy on the chunk, time axis first)."""
    from clinical_ts.data.time_series_dataset_transforms import Resample

    width = int(input_size * fs_data)
    resample = Resample(fs_data, fs_model)
    out = []
    for start in range(0, x.shape[-1] - width + 1, width):
        chunk = np.ascontiguousarray(x[..., start:start + width].transpose(0, 2, 1))  # [B, L, C], as the memmap holds it
        out.append(np.stack([resample((c, None, None, None, None))[0].T for c in chunk]).astype(np.float32))
    return out


def s4(root: Path, out: Path) -> None:
    """The reality check's S4Model (code/clinical_ts/models/s4_model.py + s42.py) as main_lite_ecg.py builds it for
    ``--architecture s4`` (d_input 12, bidirectional, l_max = 250 samples), on raw 500 Hz mV records of 10 s cut and
    resampled as main_lite does (``clinical_ts_windows``: four 2.5 s chunks, each resampled to 100 Hz by resampy), the
    mean over time of the last layer per chunk, averaged. s42 evaluates its Cauchy kernel with pykeops on the GPU or a
    CUDA extension; neither runs here, so its ``cauchy_conj`` is replaced by the same sum in torch. Files: a Lightning
    ``Trainer.save_checkpoint`` of a module holding the model (hyper-parameters, optimizer and loop state), and the
    bare state dict."""
    stub_module("pytorch_lightning.utilities", rank_zero_only=lambda f: f)
    sys.path.insert(0, str(root))
    from clinical_ts.models import s42
    from clinical_ts.models.s4_model import S4Model

    def cauchy_conj(v, z, w):  # the pykeops expression, summed in torch: v / (z - w) + conj(v) / (z - conj(w))
        v, w = v.unsqueeze(-1), w.unsqueeze(-1)
        return (v / (z - w) + v.conj() / (z - w.conj())).sum(-2)

    s42.cauchy_conj, s42.has_cauchy_extension = cauchy_conj, False
    torch.manual_seed(SEED)  # dt and C are drawn from the global generator and kept (randomise sets parameters only)
    official = S4Model(d_input=12, d_output=71, l_max=250, d_state=8, d_model=512, n_layers=4, bidirectional=True)
    model = S4Model(d_input=12, d_output=4, l_max=250, d_state=4, d_model=16, n_layers=2, bidirectional=True).eval()
    randomise(model, 9)
    folder = out / "s4"
    folder.mkdir(parents=True, exist_ok=True)
    hparams = {"architecture": "s4", "input_size": 2.5, "fs_model": 100.0, "s4_n": 4, "s4_h": 16, "s4_layers": 2,
               "lr": 1e-3}  # main_lite's argparse values
    lightning_checkpoint(model, "model", hparams, folder / "s4_lightning.ckpt")
    torch.save(model.state_dict(), folder / "s4_model.pt")
    x = signals(fs=500)
    with torch.no_grad():
        model.pooling, model.decoder = True, None  # S4Model's own pooling, without the classifier
        emb = torch.stack([model(torch.from_numpy(w)) for w in clinical_ts_windows(x, 500, 100)]).mean(0)
    save_case(folder, {"method": "s4", "fs": 500, "signals_fs": 500,
                       "options": {"preset": "official", "d_model": 16, "d_state": 4, "n_layers": 2, "n_classes": 4},
                       "files": ["s4_lightning.ckpt", "s4_model.pt"],
                       "upstream_official_params": sum(p.numel() for p in official.parameters())},
              {"embedding": emb.numpy()})
    with torch.no_grad():  # 15 s records: main_lite's six chunks of the whole record (s4_15s)
        emb = torch.stack([model(torch.from_numpy(w)) for w in clinical_ts_windows(long_records(), 500, 100)]).mean(0)
    save_long_case(out / "s4_15s", "s4", {}, {"embedding": emb.numpy()})
    sys.path.remove(str(root))
    forget_modules("clinical_ts", "pytorch_lightning")


def adamw_after_one_step(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """A training script's AdamW after one step (its state as a trainer saves it: step counts and moments per
    parameter), taken at learning rate 0 so the weights the case's outputs come from stay as they are."""
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    for group in optimizer.param_groups:
        group["lr"] = lr
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items()), "the step changed the weights"
    return optimizer


def lightning_checkpoint(net: torch.nn.Module, attribute: str | None, hparams: Any, path: Path) -> None:
    """``_lightning_checkpoint`` with the stand-ins of imports a checkout makes (stub_module) out of sys.modules: they
    have no import spec, on which Lightning's probes of optional packages (torchvision) fail."""
    stubs = {n: sys.modules.pop(n) for n in [n for n, m in sys.modules.items()
                                             if n != "__main__" and isinstance(m, types.ModuleType) and getattr(m, "__spec__", 0) is None]}
    try:
        _lightning_checkpoint(net, attribute, hparams, path)
    finally:
        sys.modules.update(stubs)


def _lightning_checkpoint(net: torch.nn.Module, attribute: str | None, hparams: Any, path: Path) -> None:
    """The file a Lightning ``Trainer`` writes for a module that holds ``net`` as ``attribute`` and saved ``hparams``
    (a dict, or the Hydra config itself as clinical_ts' modules save it): one real training step through ``Trainer.fit``
    at learning rate 0 (optimizer and loop states as a trainer leaves them, the weights unchanged), then
    ``Trainer.save_checkpoint``. With no ``attribute`` the module holds ``net``'s own children and parameters, as a
    LightningModule that is the model itself (MELPModel) does."""
    import lightning

    weights = {k: v.clone() for k, v in net.state_dict().items()}

    class Module(lightning.LightningModule):
        def __init__(self, hp):
            super().__init__()
            self.save_hyperparameters(hp)
            if attribute:
                setattr(self, attribute, net)
                return
            for name, child in net.named_children():
                setattr(self, name, child)
            for name, param in net.named_parameters(recurse=False):
                setattr(self, name, param)

        def training_step(self, batch, _):
            return sum(p.sum() for p in self.parameters()) * 0.0

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=0.0, weight_decay=1e-3)

    module = Module(hparams)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(1, 1)), batch_size=1)
    trainer = lightning.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(path.parent))
    trainer.fit(module, data)
    net.eval()
    assert all(torch.equal(weights[k], v) for k, v in net.state_dict().items()), "the step changed the weights"
    trainer.save_checkpoint(path)


def ecg_cpc(root: Path, out: Path) -> None:
    """ECG-CPC as code/conf/config_cpc_ecg_s4_heedb.yaml composes it: clinical_ts' own TimeSeriesEncoder built from its
    structured configs (RNNEncoder conv stack, causal S4Predictor on ts/s4_modules/s42.py, MLPHead, CPCLoss), input shape
    as template_model.py gives it (sequence last, length = 10 s x 240 Hz); official sizes for the parameter count, reduced
    ones for the files. Outputs as CPCWrapper reads them (``output["seq"]`` of the SSL forward, averaged over time) on the
    four non-overlapping 2.5 s windows of 240 Hz records (run.sh), averaged. s42's Cauchy kernel is summed in torch."""
    stub_module("pytorch_lightning.utilities", rank_zero_only=lambda f: f)
    sys.path.insert(0, str(root))
    from omegaconf import OmegaConf

    from clinical_ts.loss.selfsupervised import CPCLossConfig
    from clinical_ts.template_modules import ShapeConfig, TimeSeriesEncoder, TimeSeriesEncoderConfig
    from clinical_ts.ts.encoder import RNNEncoderConfig
    from clinical_ts.ts.head import MLPHeadConfig
    from clinical_ts.ts.s4 import S4PredictorConfig
    from clinical_ts.ts.s4_modules import s42

    def cauchy_conj(v, z, w):
        v, w = v.unsqueeze(-1), w.unsqueeze(-1)
        return (v / (z - w) + v.conj() / (z - w.conj())).sum(-2)

    s42.cauchy_conj, s42.has_cauchy_extension = cauchy_conj, False

    def build(width: int, state: int, layers: int):
        cfg = TimeSeriesEncoderConfig(enc=RNNEncoderConfig(features=[width] * 4, kss=[3, 1, 1, 1], strides=[2, 1, 1, 1]),
                                      pred=S4PredictorConfig(causal=True, state_dim=state, model_dim=width, layers=layers),
                                      head_ssl=MLPHeadConfig(multi_prediction=True, bias=False),
                                      loss=CPCLossConfig(steps_predicted=14, negatives_from_same_seq_only=True))
        return TimeSeriesEncoder(cfg, ShapeConfig(12, 2400, True), None), cfg

    torch.manual_seed(SEED)
    official, _ = build(512, 8, 4)
    model, cfg = build(16, 4, 2)
    model.eval()
    randomise(model, 10)
    folder = out / "ecg_cpc"
    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    # pretrain.py's module saves the Hydra config (structured configs of clinical_ts) as its hyper-parameters
    hparams = OmegaConf.create({"ts": OmegaConf.structured(cfg), "base": {"fs": 240.0, "input_size": 10.0}})
    lightning_checkpoint(model, "ts_encoder", hparams, folder / "cpc_last.ckpt")
    torch.save({"state_dict": {**{f"model.model.ts_encoder.{k}": v for k, v in state.items()},
                               "model.head.weight": torch.zeros(5, 16), "model.head.bias": torch.zeros(5)}},
               folder / "cpc_finetuned.ckpt")  # main_lite_ecg.py's module around CPCWrapper after fine-tuning
    x = signals(fs=500)
    with torch.no_grad():
        emb = torch.stack([model(seq=torch.nan_to_num(torch.from_numpy(w)))["seq"].mean(1)
                           for w in clinical_ts_windows(x, 500, 240)]).mean(0)
    save_case(folder, {"method": "ecg_cpc", "fs": 500, "signals_fs": 500,
                       "options": {"preset": "official", "features": [16, 16, 16, 16], "d_state": 4, "n_layers": 2},
                       "files": ["cpc_last.ckpt", "cpc_finetuned.ckpt"],
                       "upstream_official_params": sum(p.numel() for p in official.parameters())},
              {"embedding": emb.numpy()})
    with torch.no_grad():  # 15 s records: every 2.5 s chunk of the whole record (ecg_cpc_15s)
        emb = torch.stack([model(seq=torch.nan_to_num(torch.from_numpy(w)))["seq"].mean(1)
                           for w in clinical_ts_windows(long_records(), 500, 240)]).mean(0)
    save_long_case(out / "ecg_cpc_15s", "ecg_cpc", {}, {"embedding": emb.numpy()})
    sys.path.remove(str(root))
    forget_modules("clinical_ts", "pytorch_lightning")


def heartlang_engine_files(root: Path, folder: Path, pretrained: torch.nn.Module, classifier: torch.nn.Module) -> None:
    """The files HeartLang's training scripts write, by their own calls: ``utils.save_model`` with the optimizer of
    ``utils.optim_factory.create_optimizer`` whose learning rates and weight decays the engine's cosine schedules
    (numpy arrays) have set, and the loss scaler; the pretraining checkpoint of epoch 200, the fine-tuning's best."""
    import argparse as argparse_module

    for name in ("adafactor.Adafactor", "adahessian.Adahessian", "adamp.AdamP", "lookahead.Lookahead", "nadam.Nadam",
                 "nvnovograd.NvNovoGrad", "radam.RAdam", "rmsprop_tf.RMSpropTF", "sgdp.SGDP"):
        module, _, cls = name.partition(".")
        stub_module(f"timm.optim.{module}", **{cls: None})
    stub_module("timm.utils", get_state_dict=lambda m: m.state_dict())
    stub_module("h5py")
    stub_module("tensorboardX", SummaryWriter=None)
    stub_module("pyhealth.metrics", binary_metrics_fn=None, multiclass_metrics_fn=None)
    from utils import utils as heartlang_utils
    from utils.optim_factory import create_optimizer

    for model, epoch, base_lr in ((pretrained, 200, 5e-4), (classifier, "best", 1e-4)):
        args = argparse_module.Namespace(model="HeartLang", codebook_size=16, batch_size=64, lr=base_lr, opt="adamw",
                                         opt_eps=1e-8, opt_betas=None, momentum=0.9, weight_decay=0.05,
                                         output_dir=str(folder), enable_deepspeed=False)
        optimizer = create_optimizer(args, model)
        lr_schedule = heartlang_utils.cosine_scheduler(base_lr, 1e-5, 200, 2, warmup_epochs=1)
        wd_schedule = heartlang_utils.cosine_scheduler(0.05, 0.05, 200, 2)
        for group in optimizer.param_groups:  # engine_for_pretraining.train_one_epoch, the last iteration
            group["lr"] = lr_schedule[-1] * group.get("lr_scale", 1.0)
            if group["weight_decay"] > 0:
                group["weight_decay"] = wd_schedule[-1]
        heartlang_utils.save_model(args, epoch, model, model, optimizer, heartlang_utils.NativeScalerWithGradNormCount(),
                                   save_ckpt_freq=20)
    (folder / "checkpoint.pth").unlink()  # save_model's rolling copy of the last epoch
    (folder / "checkpoint-best.pth").rename(folder / "finetuned_checkpoint-best.pth")
    forget_modules("utils", "timm", "h5py", "tensorboardX", "pyhealth")


def heartlang(root: Path, out: Path) -> None:
    """HeartLang from PKUDigitalHealth/HeartLang on raw 500 Hz mV records of 10 s: its dataset preprocessing's
    ``resample_signals`` (scipy.signal.resample per lead, datasets/dataset_preprocess/CPSC2018/make_cpsc_dataset.py) to
    100 Hz, then QRSTokenizer.py's own detection, segmentation and sentence assembly (called per record: its forward also
    saves and plots), then modeling_finetune's ST_ECGFormerClassifier (backbone = modeling_pretrain.ST_ECGFormer) as
    run_class_finetuning.py evaluates it (class token of the backbone's tokens). Files written by the training scripts'
    own ``utils.save_model`` (``heartlang_engine_files``): the pretraining checkpoint and a fine-tuned classifier's
    (backbone.* + mlp_head.*, with the classifier's default 1,024-code language-model head)."""
    import importlib.util

    stub_module("timm.models", register_model=lambda f: f)
    stub_module("timm", create_model=None)
    stub_module("modeling_vqhbr")
    sys.path.insert(0, str(root))
    from modeling_finetune import ST_ECGFormerClassifier
    from modeling_pretrain import HeartLang, ST_ECGFormer
    from QRSTokenizer import QRSTokenizer

    torch.manual_seed(SEED)
    official = HeartLang()
    dims = dict(seq_len=256, time_window=96, depth=2, embed_dim=32, heads=2, mlp_dim=64, dim_head=16)
    pretrained = ST_ECGFormer(**dims, vocab_size=16).eval()
    randomise(pretrained, 11)
    classifier = ST_ECGFormerClassifier(**dims, num_classes=5).eval()
    randomise(classifier, 12)
    classifier.backbone.load_state_dict({**pretrained.state_dict(), "lm_head.weight": classifier.backbone.lm_head.weight,
                                         "lm_head.bias": classifier.backbone.lm_head.bias})
    folder = out / "heartlang"
    folder.mkdir(parents=True, exist_ok=True)
    heartlang_engine_files(root, folder, pretrained, classifier)
    stub_module("pyemd")  # imported at the top of the preprocessing script, not used by resample_signals
    spec = importlib.util.spec_from_file_location("make_cpsc_dataset", root / "datasets/dataset_preprocess/CPSC2018/make_cpsc_dataset.py")
    preprocessing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(preprocessing)
    tokenizer = QRSTokenizer(fs=100, max_len=256, token_len=96, save_path=str(folder), stage="test", used_channels=list(range(12)))

    def embed(x: np.ndarray, used_channels: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        tok = tokenizer if used_channels is None else QRSTokenizer(fs=100, max_len=256, token_len=96, save_path=str(folder),
                                                                    stage="test", used_channels=used_channels)
        sentences = []
        for record in x[:, tok.used_channels]:  # QRSTokenizer.forward, one record at a time
            beats = tok.qrs_detection(record)
            sentences.append(tok.qrs_to_sequence(tok.extract_qrs_segments(record, beats), beats))
        words, chans, times = (torch.as_tensor(np.stack(p)) for p in zip(*sentences))
        with torch.no_grad():
            return classifier.backbone(words.float(), in_chan_matrix=chans.long(), in_time_matrix=times.long(),
                                       return_all_tokens=True)[:, 0], chans

    emb, chans = embed(preprocessing.resample_signals(signals(fs=500).astype(np.float64), 500, 100))
    save_case(folder, {"method": "heartlang", "fs": 500, "signals_fs": 500,
                       "options": {"preset": "official", "embed_dim": 32, "depth": 2, "heads": 2, "mlp_dim": 64, "dim_head": 16,
                                   "vocab_size": 16},
                       "files": ["checkpoint-200.pth", "finetuned_checkpoint-best.pth"],
                       "beats_per_record": [int((c == 1).sum()) for c in chans.numpy()],
                       "upstream_official_params": sum(p.numel() for p in official.parameters())},
              {"embedding": emb.numpy()})
    heartlang_datasets(root, out, embed)
    three = [0, 1, 7]  # QRSTokenizer's used_channels for I, II, V2 (its run_class_finetuning.py's example sets)
    emb, _ = embed(preprocessing.resample_signals(signals(fs=500).astype(np.float64), 500, 100), three)
    save_long_case(out / "heartlang_leads_3", "heartlang", {"seconds": 10, "gain": None, "leads": ["I", "II", "V2"]},
                   {"embedding": emb.numpy()}, records=signals(fs=500))
    sys.path.remove(str(root))
    forget_modules("modeling_finetune", "modeling_pretrain", "modeling_vqhbr", "QRSTokenizer", "timm")


def heartlang_datasets(root: Path, out: Path, embed) -> None:
    """HeartLang's own dataset scripts, their loops' steps in order through the scripts' own functions, on the heartlang
    case's weights: make_cpsc_dataset.py on the 15 s records as loadmat reads CPSC2018's mV (the first 2,500 samples,
    2,500 zeros, normalize_data to [-3, 3] over the record, resample_signals to 100 Hz), and make_csn_datasets.py on 10 s
    records as loadmat reads Chapman's digital values cast to float32 (normalize_data, resample_signals, then
    bandpass_filter 0.67-40 Hz at 100 Hz)."""
    import importlib.util

    def script(name: str, path: str):
        spec = importlib.util.spec_from_file_location(name, root / "datasets/dataset_preprocess" / path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    cpsc = script("make_cpsc_dataset", "CPSC2018/make_cpsc_dataset.py")
    stacked = np.array([cpsc.normalize_data(np.pad(ecg[:, 0:2500], ((0, 0), (0, 2500)), "constant", constant_values=0),
                                            new_min=-3, new_max=3) for ecg in long_records()])
    emb, _ = embed(cpsc.resample_signals(stacked, 500, 100))
    save_long_case(out / "heartlang_cpsc_15s", "heartlang", {"dataset": "cpsc2018"}, {"embedding": emb.numpy()})
    csn = script("make_csn_datasets", "CSN/make_csn_datasets.py")
    digital = np.round(signals(fs=500) * LONG_GAIN).astype(np.float32)  # loadmat(...)["val"].astype(np.float32)
    stacked = np.array([csn.normalize_data(ecg, new_min=-3, new_max=3) for ecg in digital])
    emb, _ = embed(csn.bandpass_filter(csn.resample_signals(stacked, 500, 100), 0.67, 40, 100))
    save_long_case(out / "heartlang_csn", "heartlang", {"dataset": "csn", "seconds": 10}, {"embedding": emb.numpy()},
                   records=digital / LONG_GAIN)


def stub_module(name: str, **attrs) -> None:
    """An import a checkout makes for something the fixture never runs (e.g. timm's DropPath at rate 0)."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    for key, value in attrs.items():
        setattr(sys.modules[name], key, value)


def ecgjepa(root: Path, out: Path) -> None:
    """ecg_jepa.MaskTransformer as models.load_encoder builds it (official sizes for the parameter count, reduced
    for the file) and ecg_data.waves_ptbxl's input: scipy.signal.resample to 2,500 samples, leads I, II, V1-V6."""
    from scipy.signal import resample

    stub_module("timm.models.layers", DropPath=torch.nn.Identity, trunc_normal_=torch.nn.init.trunc_normal_)
    sys.path.insert(0, str(root))
    from ecg_jepa import ecg_jepa

    official = ecg_jepa(encoder_embed_dim=768, encoder_depth=12, encoder_num_heads=16, predictor_embed_dim=384,
                        predictor_depth=6, predictor_num_heads=12, c=8, pos_type="sincos", mask_scale=(0, 0)).encoder
    model = ecg_jepa(encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=4, predictor_embed_dim=32, predictor_depth=1,
                     predictor_num_heads=2, c=8, pos_type="sincos", mask_scale=(0, 0)).encoder.eval()
    randomise(model, 6)
    folder = out / "ecgjepa"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"encoder": model.state_dict(), "epoch": 99}, folder / "multiblock_epoch100.pth")  # pretrain_ECG_JEPA.py
    x = signals()
    waves = np.array([resample(r, 2500, axis=1) for r in x])
    waves = np.concatenate([waves[:, :2], waves[:, 6:]], axis=1)
    with torch.no_grad():
        emb = model.representation(torch.tensor(waves, dtype=torch.float32))
    save_case(folder, {"method": "ecgjepa", "fs": 500,
                       "options": {"preset": "official", "width": 64, "depth": 2, "heads": 4, "pred_width": 32, "pred_depth": 1,
                                   "pred_heads": 2},
                       "files": ["multiblock_epoch100.pth"],
                       "upstream_official_params": sum(p.numel() for p in official.parameters())},
              {"embedding": emb.numpy()})
    sys.path.remove(str(root))
    forget_modules("ecg_jepa", "pos_encoding", "timm")


def hubert_ecg(root: Path, out: Path) -> None:
    """code/hubert_ecg.HuBERTECG (a transformers HubertModel) with pretrain.py's sizes (base, for the parameter
    count; reduced for the files), saved as the Hugging Face folder's model.safetensors and as the .pt that
    finetune.py reads (its HuBERTECGConfig pickled inside); inputs through utils.ecg_preprocessing (biosppy's FIR
    band-pass, [-1, 1] scaling) and dataset.py's encode path (first 5 s, leads concatenated, decimate by 5)."""
    from scipy import signal as scipy_signal

    for name in ("iterstrat.ml_stratifiers", "torchmetrics.classification", "torcheval.metrics"):  # utils.py's metric
        stub_module(name, **{attr: None for attr in ("MultilabelStratifiedShuffleSplit", "MultilabelF1Score",  # imports,
                                                     "MultilabelRecall", "MultilabelPrecision", "MultilabelSpecificity",
                                                     "MultilabelAUROC", "MulticlassRecall", "MulticlassSpecificity",
                                                     "MultilabelAUPRC", "MulticlassAUROC", "MulticlassAccuracy",
                                                     "MulticlassAUPRC")})  # unused here
    for name in ("biosppy", "biosppy.signals"):  # biosppy/__init__ imports its plotting stack; tools.py needs none of it
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [str(Path(p) / name.replace(".", "/")) for p in sys.path
                               if (Path(p) / name.replace(".", "/")).is_dir()][:1]
            sys.modules[name] = module
    sys.path.insert(0, str(root))
    from hubert_ecg import HuBERTECG, HuBERTECGConfig
    from utils import ecg_preprocessing

    conv = dict(conv_kernel=(10, 3, 3, 2, 2), conv_stride=(4, 2, 2, 2, 2))
    base = HuBERTECG(HuBERTECGConfig(ensemble_length=1, vocab_sizes=[100], hidden_size=768, num_hidden_layers=12,
                                     num_attention_heads=12, intermediate_size=3072, classifier_proj_size=256,
                                     mask_time_prob=0.33, mask_time_length=1, conv_dim=(512,) * 5, **conv))
    config = HuBERTECGConfig(ensemble_length=1, vocab_sizes=[12], hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, classifier_proj_size=16, mask_time_prob=0.33, mask_time_length=1,
                             conv_dim=(16,) * 5, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, **conv)
    model = HuBERTECG(config).eval()
    randomise(model, 7)
    folder = out / "hubert_ecg"
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder / "hf")  # the Hugging Face folder's form
    (folder / "model.safetensors").write_bytes((folder / "hf" / "model.safetensors").read_bytes())
    for extra in (folder / "hf").iterdir():
        extra.unlink()
    (folder / "hf").rmdir()
    torch.save({"global_step": 1, "model_config": model.config, "model_state_dict": model.state_dict(),
                "pretraining_vocab_sizes": [12]}, folder / "hubert_ecg_small.pt")  # pretrain.py's checkpoint
    x = signals()
    inputs = []
    for record in x:
        data = ecg_preprocessing(record.astype(np.float64), 500)[:, :2500]  # the stored .npy, then encode mode
        data = np.where(np.isnan(data), data[~np.isnan(data)].mean(), data).reshape(-1)
        inputs.append(scipy_signal.decimate(data, 5))
    with torch.no_grad():
        emb = model(torch.from_numpy(np.stack(inputs).copy()).float()).last_hidden_state.mean(dim=1)
    save_case(folder, {"method": "hubert_ecg", "fs": 500,
                       "options": {"preset": "official", "hidden": 32, "layers": 2, "heads": 2, "ffn": 64, "proj": 16,
                                   "conv_dim": [16] * 5, "pos_conv": 16, "pos_groups": 4},
                       "files": ["model.safetensors", "hubert_ecg_small.pt"],
                       "upstream_official_params": sum(p.numel() for n, p in base.named_parameters()
                                                       if not n.startswith(("final_proj.", "label_embedding.")))},
              {"embedding": emb.numpy()})
    sys.path.remove(str(root))
    forget_modules("hubert_ecg", "utils", "biosppy", "iterstrat", "torchmetrics", "torcheval")


def fairseq_signals_backbone(root: Path):
    """fairseq-signals' wav2vec 2.0 (fuying-wang's fork that MELP installs); its dataclass configs hold other
    dataclasses as defaults, which Python >= 3.11 refuses unless they are hashable, so they are made so."""
    import dataclasses

    sys.path.insert(0, str(root))
    original = dataclasses.dataclass

    def hashable(cls=None, /, **kw):
        def wrap(c):
            if c.__module__.startswith("fairseq_signals_backbone"):
                kw.setdefault("unsafe_hash", True)
            return original(c, **kw)
        return wrap(cls) if cls is not None else wrap

    dataclasses.dataclass = hashable
    try:
        from fairseq_signals_backbone.models.wav2vec2.wav2vec2_cmsc import Wav2Vec2CMSCConfig, Wav2Vec2CMSCModel
    finally:
        dataclasses.dataclass = original
    return Wav2Vec2CMSCConfig, Wav2Vec2CMSCModel


def _melp_upstream(root: Path, fsb: Path) -> types.SimpleNamespace:
    """MELP's classes from the checkout (its package __init__ files import the training stack, so the modules are
    loaded by path) and builders of its ECG side: fairseq-signals' Wav2Vec2CMSCModel (``w2v``) under ECGFMModel's
    attributes (``ecg_side``)."""
    from torch import nn

    config_cls, w2v_cls = fairseq_signals_backbone(fsb)
    for name, attrs in {"melp.models.base_pretrain_model": {"BasePretrainModel": nn.Module},
                        "melp.models.merl_model": {"MERLModel": nn.Module}, "melp.utils.openclip_loss": {"ClipLoss": None, "CoCaLoss": None},
                        "melp.backbone.resnet1d": dict.fromkeys(("ResNet18", "ResNet34", "ResNet50", "ResNet101")),
                        "melp.backbone.modeling_finetune": {}, "melp.paths": {"ECGFM_PATH": "", "SPLIT_DIR": Path(".")}, "ot": {},
                        "ipdb": {}, "timm.models": {"create_model": None}, "timm.models.layers": {"Mlp": None},
                        "torchvision.ops.misc": {"FrozenBatchNorm2d": None}}.items():
        stub_module(name, **attrs)
    for name in ("melp", "melp.backbone", "melp.models", "melp.datasets"):  # their __init__ files import the training stack
        stub_module(name)
        sys.modules[name].__path__ = [str(root / "src" / name.replace(".", "/"))]
    from melp.backbone.transformer import AttentionalPooler
    from melp.models.ecgfm_model import ECGFMModel
    from melp.models.melp_model import MELPModel

    def w2v(layers: int, width: int, heads: int, ffn: int, **small):
        return w2v_cls(config_cls(apply_mask=True, mask_prob=0.65, quantize_targets=True, final_dim=256 if not small else 16,
                                  dropout_input=0.1, dropout_features=0.1, feature_grad_mult=0.1, encoder_embed_dim=width,
                                  encoder_attention_heads=heads, in_d=12, encoder_layers=layers, encoder_ffn_embed_dim=ffn, **small))

    def ecg_side(encoder, proj: int, heads: int, queries: int, caption: int) -> nn.Module:
        side = nn.Module()  # ECGFMModel's attributes, under its names
        side.ecg_encoder, width = encoder, encoder.cfg.encoder_embed_dim
        side.use_attentional_pool_contrast = side.use_attentional_pool_caption = True
        side.attn_pool_contrast = AttentionalPooler(d_model=proj, context_dim=width, n_head=heads, n_queries=queries)
        side.ln_contrast = nn.LayerNorm(proj)
        side.proj_contrast = nn.Parameter(width ** -0.5 * torch.randn(proj, proj))
        side.head = nn.Sequential()
        side.attn_pool_caption = AttentionalPooler(d_model=caption, context_dim=width, n_head=heads, n_queries=8)
        side.ln_caption = nn.LayerNorm(caption)
        side.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))
        side.bn = nn.BatchNorm1d(width, affine=False)
        return side

    small = dict(conv_feature_layers="[(32, 2, 2)] * 4", conv_pos=8, conv_pos_groups=2, latent_dim=0, latent_vars=8)
    return types.SimpleNamespace(w2v=w2v, ecg_side=ecg_side, small=small, ECGFMModel=ECGFMModel, MELPModel=MELPModel)


def melp(root: Path, fsb: Path, out: Path, text: dict[str, Path]) -> None:
    """MELP's own methods run on stand-ins holding its attributes (MELPModel and ECGFMModel are Lightning modules
    whose constructors download heart_bert): ECGFMModel._encode_ecg / ext_ecg_emb on fairseq-signals'
    Wav2Vec2CMSCModel with backbone/transformer.AttentionalPooler, MELPModel._tokenize / _encode_text on a causal
    BERT with [BOS] added (the tiny stand-in of heart_bert); finetune_dataset.py's PTB-XL input; the file is written
    by a Lightning ``Trainer`` (one step at learning rate 0, then ``save_checkpoint``: optimizer and loop states, and
    MELPModel's own hyper-parameters with their numpy float64)."""
    from torch import nn
    from transformers import AutoModelForCausalLM, AutoTokenizer

    up = _melp_upstream(root, fsb)
    w2v, ecg_side, small, ECGFMModel, MELPModel = up.w2v, up.ecg_side, up.small, up.ECGFMModel, up.MELPModel
    official = ecg_side(w2v(8, 768, 12, 3072), 256, 8, 13, 768)
    model = nn.Module()  # MELPModel's attributes
    model.ecg_encoder = ecg_side(w2v(2, 32, 2, 64, **small), 16, 2, 4, 32)
    model.tokenizer = AutoTokenizer.from_pretrained(text["bert"])  # init_text_encoder
    model.tokenizer.add_special_tokens({"bos_token": "[BOS]"})
    model.tokenizer.eos_token_id = model.tokenizer.convert_tokens_to_ids("[SEP]")
    tokenizer = model.tokenizer  # transformers 5 dropped batch_encode_plus; it was the same call as __call__
    tokenizer.batch_encode_plus = lambda batch_text_or_text_pairs, **kw: tokenizer(batch_text_or_text_pairs, **kw)
    model.lm_model = AutoModelForCausalLM.from_pretrained(text["bert"], is_decoder=True)
    model.lm_model.resize_token_embeddings(len(model.tokenizer))
    model.proj_t = nn.Sequential(nn.Linear(32, 16), nn.GELU(), nn.Linear(16, 16))
    model.sent_proj, model.text_decoder = nn.Linear(32, 16), nn.Linear(16, 16)
    model.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))
    model.text_encoder_name, model.max_seq_len = "fuyingw/heart_bert", 128
    model.eval()
    randomise(model, 8)
    folder = out / "melp"
    folder.mkdir(parents=True, exist_ok=True)
    # MELPModel.__init__ calls save_hyperparameters(): its arguments as given, here its own defaults (init_logit_scale
    # np.log(1 / 0.07), a numpy float64) with the text tower the released model uses
    hparams = {k: p.default for k, p in inspect.signature(MELPModel.__init__).parameters.items()
               if p.default is not inspect.Parameter.empty}
    assert isinstance(hparams["init_logit_scale"], np.floating)
    lightning_checkpoint(model, None, {**hparams, "text_encoder_name": "fuyingw/heart_bert"}, folder / "melp_lightning.ckpt")
    x = signals()
    ecg = x[:, :, :5000]
    ecg = (ecg - ecg.min(axis=(1, 2), keepdims=True)) / (ecg.max(axis=(1, 2), keepdims=True) - ecg.min(axis=(1, 2), keepdims=True) + 1e-8)
    ecg = torch.from_numpy(ecg[:, [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]].copy()).float()  # aVL/aVF swapped
    with torch.no_grad():
        emb = ECGFMModel.ext_ecg_emb(model.ecg_encoder, ecg)
        aligned = torch.nn.functional.normalize(ECGFMModel._encode_ecg(model.ecg_encoder, ecg)[0], dim=-1)
        texts = []
        for prompt in PROMPTS:  # MERLModel.get_class_emd -> MELPModel.encode_text
            tokens = MELPModel._tokenize(model, [prompt.lower()])
            z = MELPModel._encode_text(model, tokens.input_ids, tokens.attention_mask, normalize=True, return_sent_emb=False)[0]
            texts.append((z / z.norm(dim=-1, keepdim=True)).mean(0))
    save_case(folder, {"method": "melp", "fs": 500, "prompts": PROMPTS,
                       "options": {"preset": "official", "conv_dim": 32, "width": 32, "depth": 2, "heads": 2, "ffn": 64,
                                   "conv_pos": 8, "conv_pos_groups": 2, "proj": 16, "queries": 4, "pool_heads": 2,
                                   "proj_hidden": 16, "text": {"kind": "heart_bert", "path": "text/bert"}},
                       "files": ["melp_lightning.ckpt"],
                       "upstream_official_params": sum(p.numel() for m in (official.ecg_encoder, official.attn_pool_contrast,
                                                                           official.ln_contrast) for n, p in m.named_parameters()
                                                       if not n.startswith(("quantizer.", "project_q.", "final_proj.", "mask_emb")))
                       + official.proj_contrast.numel()},
              {"embedding": emb.numpy(), "aligned": aligned.numpy(), "text": torch.stack(texts).numpy()})
    sys.path.remove(str(fsb))
    forget_modules("melp", "fairseq_signals_backbone", "ot", "ipdb", "timm", "torchvision")


# ---- records longer than 10 s, through upstream's own readers -----------------------------------------------------
LONG_SECONDS, LONG_GAIN = 15, 1000.0  # 15 s synthetic records, written as WFDB at 1 uV resolution (what rdsamp reads back)


def long_records() -> np.ndarray:
    """The 15 s records as upstream reads them from their WFDB files (quantised to the files' resolution)."""
    return np.round(signals(seconds=LONG_SECONDS) * LONG_GAIN) / LONG_GAIN


def write_long_records(folder: Path, one_per_folder: bool = False) -> list[Path]:
    """The 15 s records as 500 Hz WFDB files (format 16, gain 1000/mV), one record per sub-folder if asked (for
    readers that list a folder in an order of their own)."""
    import wfdb

    leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    paths = []
    for i, record in enumerate(long_records()):
        where = folder / f"r{i}" if one_per_folder else folder
        where.mkdir(parents=True, exist_ok=True)
        wfdb.wrsamp(f"L{i:04d}", fs=500, units=["mV"] * 12, sig_name=leads, p_signal=record.T.astype(np.float64), fmt=["16"] * 12,
                    adc_gain=[LONG_GAIN] * 12, baseline=[0] * 12, write_dir=str(where))
        paths.append(where / f"L{i:04d}")
    return paths


def save_long_case(folder: Path, base: str, case_update: dict, arrays: dict, records: np.ndarray | None = None) -> None:
    """A case on the 15 s records (or ``records``) that reuses ``base``'s checkpoint files (written by upstream's code
    there)."""
    case = json.loads((folder.parent / base / "case.json").read_text())
    case.update({"files": [f"../{base}/{f}" for f in case["files"]], "seconds": LONG_SECONDS, "gain": LONG_GAIN, **case_update})
    case = {k: v for k, v in case.items() if v is not None}  # a case_update of None removes that key (records not quantised)
    for key in ("encoder_only_files", "upstream_official_params", "prompts"):
        case.pop(key, None)
    case["signals_sha256"] = signals_sha256((long_records() if records is None else records).astype(np.float32))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    np.savez_compressed(folder / "expected.npz", **{k: np.asarray(v) for k, v in arrays.items()})


def hubert_ecg_long(root: Path, out: Path) -> None:
    """utils.ecg_preprocessing on each whole 15 s record (stored as .npy, as upstream's dumping stores them), then
    dataset.ECGDataset in encode mode (first 5 s, leads concatenated, decimate by 5), on upstream's HuBERTECG with the
    hubert_ecg case's weights."""
    import tempfile

    import pandas as pd
    from safetensors.torch import load_file

    for name in ("iterstrat.ml_stratifiers", "torchmetrics.classification", "torcheval.metrics"):
        stub_module(name, **{attr: None for attr in ("MultilabelStratifiedShuffleSplit", "MultilabelF1Score", "MultilabelRecall",
                                                     "MultilabelPrecision", "MultilabelSpecificity", "MultilabelAUROC",
                                                     "MulticlassRecall", "MulticlassSpecificity", "MultilabelAUPRC",
                                                     "MulticlassAUROC", "MulticlassAccuracy", "MulticlassAUPRC")})
    stub_module("neurokit2")
    for name in ("biosppy", "biosppy.signals"):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [str(Path(p) / name.replace(".", "/")) for p in sys.path if (Path(p) / name.replace(".", "/")).is_dir()][:1]
            sys.modules[name] = module
    sys.path.insert(0, str(root))
    from dataset import ECGDataset
    from hubert_ecg import HuBERTECG, HuBERTECGConfig
    from utils import ecg_preprocessing

    conv = dict(conv_kernel=(10, 3, 3, 2, 2), conv_stride=(4, 2, 2, 2, 2))
    config = HuBERTECGConfig(ensemble_length=1, vocab_sizes=[12], hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, classifier_proj_size=16, mask_time_prob=0.33, mask_time_length=1,
                             conv_dim=(16,) * 5, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, **conv)
    model = HuBERTECG(config).eval()
    model.load_state_dict(load_file(out / "hubert_ecg" / "model.safetensors"))
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for i, record in enumerate(long_records()):
            np.save(Path(tmp) / f"L{i}.npy", ecg_preprocessing(record, 500))
            names.append(f"L{i}.npy")
        pd.DataFrame({"filename": names}).to_csv(Path(tmp) / "set.csv", index=False)
        data = ECGDataset(str(Path(tmp) / "set.csv"), tmp, downsampling_factor=5, pretrain=False, encode=True)
        inputs = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        emb = model(inputs).last_hidden_state.mean(dim=1)
    save_long_case(out / "hubert_ecg_15s", "hubert_ecg", {}, {"embedding": emb.numpy()})
    sys.path.remove(str(root))
    forget_modules("hubert_ecg", "utils", "dataset", "biosppy", "iterstrat", "torchmetrics", "torcheval", "neurokit2")


def ecgjepa_long(root: Path, out: Path) -> None:
    """ecg_data.get_ecg_data on each 15 s WFDB record (the first 5,000 samples at 500 Hz, leads I, II, V1-V6), then
    downsample_waves to 2,500 samples (crop, then resample), on the ecgjepa case's weights."""
    import tempfile

    stub_module("timm.models.layers", DropPath=torch.nn.Identity, trunc_normal_=torch.nn.init.trunc_normal_)
    stub_module("h5py")  # ecg_data imports it for the MIMIC reader, not used here
    sys.path.insert(0, str(root))
    from ecg_data import downsample_waves, get_ecg_data
    from ecg_jepa import ecg_jepa

    model = ecg_jepa(encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=4, predictor_embed_dim=32, predictor_depth=1,
                     predictor_num_heads=2, c=8, pos_type="sincos", mask_scale=(0, 0)).encoder.eval()
    model.load_state_dict(torch.load(out / "ecgjepa" / "multiblock_epoch100.pth", weights_only=True)["encoder"])
    with tempfile.TemporaryDirectory() as tmp:
        folders = [p.parent for p in write_long_records(Path(tmp), one_per_folder=True)]
        waves = np.concatenate([get_ecg_data(str(f), reduced_lead=True) for f in folders])
    waves = downsample_waves(waves, 2500)
    with torch.no_grad():
        emb = model.representation(torch.tensor(waves, dtype=torch.float32))
    save_long_case(out / "ecgjepa_15s", "ecgjepa", {}, {"embedding": emb.numpy()})
    sys.path.remove(str(root))
    forget_modules("ecg_jepa", "ecg_data", "pos_encoding", "timm", "h5py")


def _icbeb_inputs(dataset_cls, **kwargs) -> torch.Tensor:
    """An upstream finetune ECGDataset's 'icbeb' (CPSC2018) items for the 15 s records written as WFDB files."""
    import tempfile

    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_long_records(Path(tmp))
        names = [p.name for p in paths]
        table = pd.DataFrame({"ecg_id": names, "filename": names, "patient_id": range(len(names)), "age": 50, "sex": 0,
                              "strat_fold": 10, "split": "test", "AFIB": 0})  # 7 metadata columns, then the labels
        data = dataset_cls(csv_file=table, **{k: (tmp if v == "<dir>" else v) for k, v in kwargs.items()})
        items = [data[i] for i in range(len(names))]
    if isinstance(items[0], dict):  # MELP's dataset shuffles its table (sample(frac=1)); its items name themselves
        order = {f"{i}_{name}": i for i, name in enumerate(names)}
        return torch.stack([item["ecg"] for item in sorted(items, key=lambda item: order[item["id"]])])
    return torch.stack([item[0] for item in items])


def melp_cpsc(root: Path, fsb: Path, out: Path) -> None:
    """finetune_dataset.ECGDataset's 'icbeb' branch on 15 s CPSC2018-like records (the first 2,500 samples kept,
    2,500 zeros after them, min-max over the record, aVL/aVF swapped), on the melp case's weights."""
    up = _melp_upstream(root, fsb)
    stub_module("h5py")
    stub_module("neurokit2")
    from melp.datasets.finetune_dataset import ECGDataset

    side = up.ecg_side(up.w2v(2, 32, 2, 64, **up.small), 16, 2, 4, 32).eval()
    with torch.serialization.safe_globals([np._core.multiarray.scalar, np.dtype, np.dtypes.Float64DType]):  # hparams
        state = torch.load(out / "melp" / "melp_lightning.ckpt", weights_only=True)["state_dict"]
    side.load_state_dict({k[len("ecg_encoder."):]: v for k, v in state.items() if k.startswith("ecg_encoder.")})
    ecg = _icbeb_inputs(ECGDataset, data_path="<dir>", split="test", dataset_name="icbeb")
    with torch.no_grad():
        emb = up.ECGFMModel.ext_ecg_emb(side, ecg)
    save_long_case(out / "melp_cpsc_15s", "melp", {"dataset": "cpsc2018", "options": {**json.loads(
        (out / "melp" / "case.json").read_text())["options"], "text": {"kind": "none"}}}, {"embedding": emb.numpy()})
    sys.path.remove(str(fsb))
    forget_modules("melp", "fairseq_signals_backbone", "ot", "ipdb", "timm", "torchvision", "h5py", "neurokit2")


def merl_cpsc(root: Path, out: Path, text: dict[str, Path]) -> None:
    """finetune/finetune_dataset.ECGDataset's 'icbeb' branch (as MELP's: the first 2,500 samples, zero-padded to
    5,000, min-max over the record, aVL/aVF swapped) on 15 s records, on the merl_vit and merl_resnet18 cases' ECG
    encoders."""
    builder = _merl_builder(root, vit_width=128)
    sys.path.insert(0, str(root / "finetune"))
    from finetune_dataset import ECGDataset

    ecg = _icbeb_inputs(ECGDataset, data_path="<dir>", dataset_name="icbeb")  # aVL/aVF swapped by the dataset itself
    for backbone, base in (("vit_tiny", "merl_vit"), ("resnet18", "merl_resnet18")):
        model = _merl_model(builder, backbone, text)
        model.load_state_dict(torch.load(out / base / f"merl_{backbone}_final_total.pth", weights_only=True))
        model.eval()
        with torch.no_grad():
            emb = _merl_embedding(model, backbone, ecg)
        save_long_case(out / f"{base}_cpsc_15s", base, {"dataset": "cpsc2018", "options": {**json.loads(
            (out / base / "case.json").read_text())["options"], "text": {"kind": "none"}}}, {"embedding": emb.numpy()})
    sys.path.remove(str(root / "finetune"))
    sys.path.remove(str(root / "utils"))
    forget_modules("finetune_dataset")


MIMIC_MIN_COUNT = 5  # the fixture's scenario: mimic_ed_all_edfirst_all_5_5A (2,000 in the reality check, on ~800,000 ECGs)


def mimic_tasks(root: Path, out: Path) -> None:
    """The reality check's MIMIC-IV-ECG tasks on made-up tables (synthetic.mimic_tables): its prepare_mimic_ecg
    (code/clinical_ts/utils/mimic_ecg_preprocessing.py) for the scenario's records, splits and ICD-10 statements, and
    mimic_preprocessing.py's own lines for the table it hands over and for the machine measurements (run as written,
    on the files it reads)."""
    import importlib.util
    import os
    import tempfile

    import pandas as pd

    spec = importlib.util.spec_from_file_location("mimic_ecg_preprocessing", root / "code/clinical_ts/utils/mimic_ecg_preprocessing.py")
    upstream = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(upstream)
    script = (root / "mimic_preprocessing.py").read_text()

    def lines(start: str, end: str) -> str:
        return script[script.index(start):script.index(end)]

    icd, mm, record_list = mimic_tables()
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            Path("data").mkdir()
            icd.to_csv("records_w_diag_icd10.csv")  # with the index column prepare_mimic_ecg drops ('Unnamed: 0')
            mm.to_csv("data/machine_measurements.csv", index=False)
            df = pd.read_csv("records_w_diag_icd10.csv").drop(columns="Unnamed: 0")
            df["data"] = df.index
            scope = {"pd": pd, "np": np, "df": df}
            exec(lines("df_diags_cols = [", "df_scenario, lbl_itos_diagnostic"), scope)  # noqa: S102 - upstream's own lines
            scenario, classes = upstream.prepare_mimic_ecg(f"mimic_ed_all_edfirst_all_{MIMIC_MIN_COUNT}_5A", Path(tmp),
                                                           df_mapped=scope["df_clean"])
            exec(lines("dfecgfeatures = pd.read_csv('data/machine_measurements.csv'", "df = df.merge(dfecgfeatures"), scope)  # noqa: S102
            features = scope["dfecgfeatures"]
        finally:
            os.chdir(here)
    names = list(classes)
    records = {str(row.study_id): {"labels": sorted(names[i] for i in np.flatnonzero(row.label)), "strat_fold": int(row.strat_fold)}
               for row in scenario.itertuples()}
    columns = ["RR", "QRS", "QT", "QTc", "P_wave_axis", "QRS_axis", "T_wave_axis"]
    measurements = {str(icd.study_id[i]): {c: (None if pd.isna(v) else float(v)) for c, v in zip(columns, features.loc[i, columns])}
                    for i in features["data"]}
    folder = out / "mimic_tasks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "expected.json").write_text(json.dumps({
        "source": "AI4HealthUOL/ecg-fm-benchmarking@6367295 (mimic_preprocessing.py, prepare_mimic_ecg)",
        "scenario": f"mimic_ed_all_edfirst_all_{MIMIC_MIN_COUNT}_5A", "min_count": MIMIC_MIN_COUNT,
        "tables_sha256": tables_sha256(icd, mm, record_list), "classes": names, "records": records,
        "measurements": measurements}, indent=1, sort_keys=True) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stmem", type=Path)
    ap.add_argument("--merl", type=Path)
    ap.add_argument("--dbeta", type=Path)
    ap.add_argument("--ecgfounder", type=Path)
    ap.add_argument("--ecgjepa", type=Path)
    ap.add_argument("--hubert-ecg", type=Path, help="HuBERT-ECG/code (needs biosppy on --pythonpath)")
    ap.add_argument("--melp", type=Path, help="MELP checkout (with --fairseq-signals-backbone)")
    ap.add_argument("--fairseq-signals-backbone", type=Path, help="fuying-wang/fairseq-signals/src")
    ap.add_argument("--xresnet1d", type=Path, help="helme/ecg_ptbxl_benchmarking/code (its models/ package)")
    ap.add_argument("--s4", type=Path, help="AI4HealthUOL/ecg-fm-benchmarking/code (its clinical_ts package; einops and "
                    "opt_einsum on --pythonpath)")
    ap.add_argument("--ecg-cpc", type=Path, help="AI4HealthUOL/ecg-fm-benchmarking/code again (clinical_ts' ts/ modules)")
    ap.add_argument("--heartlang", type=Path, help="PKUDigitalHealth/HeartLang checkout (einops on --pythonpath)")
    ap.add_argument("--ecgfm-ked", type=Path, help="control-spiderman/ECGFM-KED checkout (its models/xresnet1d_101.py)")
    ap.add_argument("--challenge", type=Path, help="physionetchallenges/evaluation-2021 checkout (the challenge metric)")
    ap.add_argument("--clef", type=Path, help="Nokia-Bell-Labs/ecg-foundation-model checkout (lightning and omegaconf importable)")
    ap.add_argument("--mimic-tasks", type=Path, help="AI4HealthUOL/ecg-fm-benchmarking checkout (its mimic_preprocessing.py and "
                    "code/clinical_ts/utils/mimic_ecg_preprocessing.py)")
    ap.add_argument("--pythonpath", type=Path, action="append", default=[], help="extra folders (e.g. einops for ST-MEM)")
    ap.add_argument("--out", type=Path, default=Path("tests/golden"))
    ap.add_argument("--long-records", action="store_true",
                    help="only the cases on 15 s records (hubert_ecg_15s, ecgjepa_15s, melp_cpsc_15s, merl_vit_cpsc_15s), "
                         "through upstream's readers, on the weights the base cases already wrote")
    args = ap.parse_args()
    sys.path[:0] = [str(p) for p in args.pythonpath]
    torch.manual_seed(SEED)
    text = write_text_models(args.out)
    if args.long_records:
        for run, given in ((lambda: hubert_ecg_long(args.hubert_ecg, args.out), args.hubert_ecg),
                           (lambda: ecgjepa_long(args.ecgjepa, args.out), args.ecgjepa),
                           (lambda: melp_cpsc(args.melp, args.fairseq_signals_backbone, args.out), args.melp),
                           (lambda: merl_cpsc(args.merl, args.out, text), args.merl)):
            if given:
                run()
        return
    cases = [  # in this order (each case seeds its own weights; the order is kept so fixtures regenerate byte for byte)
        (args.stmem, lambda: stmem(args.stmem, args.out)),
        (args.merl, lambda: merl(args.merl, args.out, text)),
        (args.dbeta, lambda: dbeta(args.dbeta, args.out, text)),
        (args.ecgfounder, lambda: ecgfounder(args.ecgfounder, args.out)),
        (args.ecgjepa, lambda: ecgjepa(args.ecgjepa, args.out)),
        (args.hubert_ecg, lambda: hubert_ecg(args.hubert_ecg, args.out)),
        (args.melp, lambda: melp(args.melp, args.fairseq_signals_backbone, args.out, text)),
        (args.xresnet1d, lambda: (xresnet1d(args.xresnet1d, args.out), xresnet1d_long(args.xresnet1d, args.out),
                                  xresnet1d_long(args.xresnet1d, args.out, 10))),
        (args.ecgfm_ked, lambda: ecgfm_ked(args.ecgfm_ked, args.out)),
        (args.s4, lambda: s4(args.s4, args.out)),
        (args.ecg_cpc, lambda: ecg_cpc(args.ecg_cpc, args.out)),
        (args.heartlang, lambda: heartlang(args.heartlang, args.out)),
        (args.clef, lambda: clef(args.clef, args.out)),
        (args.challenge, lambda: challenge(args.challenge, args.out)),
        (args.mimic_tasks, lambda: mimic_tasks(args.mimic_tasks, args.out)),
    ]
    for given, run in cases:
        if given:
            run()

if __name__ == "__main__":
    main()
