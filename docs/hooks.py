"""MkDocs hook: the encoders page's model-card section is generated from configs/cards/*.yaml at build time, so the
documentation cannot drift from the cards the harness reads."""

from __future__ import annotations

from pathlib import Path

import yaml

CARDS = Path(__file__).resolve().parents[1] / "configs" / "cards"
MARKER = "<!-- model-cards: generated from configs/cards/*.yaml by docs/hooks.py -->"


def _cell(value) -> str:
    if isinstance(value, list):
        return "; ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_cell(v)}" for k, v in value.items())
    return str(value).replace("|", "\\|").replace("\n", " ")


def _card(card: dict) -> str:
    lines = [f"### {card.get('title', card['name'])} (`{card['name']}`)", ""]
    for key in ("paper", "source", "licence", "objective", "text", "input"):
        if card.get(key):
            lines.append(f"- **{key}**: {_cell(card[key])}")
    if card.get("file_forms"):
        lines.append(f"- **file forms that load**: {_cell(card['file_forms'])}")
    if card.get("checkpoint_objects"):
        lines.append(f"- **objects its files may pickle** (read as inert stand-ins): {_cell(card['checkpoint_objects'])}")
    for w in card.get("weights") or []:
        where = f"hf:{w['hf']['repo']}/{w['hf']['file']}@{w['hf'].get('revision', 'main')}" if w.get("hf") else w.get("url", "")
        lines.append(f"- **released `{w['form']}`** (preset `{w.get('preset', 'official')}`): `{where}`; sha256 "
                     f"{w.get('sha256') or 'not recorded'}" + (f"; {_cell(w['note'])}" if w.get("note") else ""))
    rows = [(name, p.get("architecture", ""), ", ".join(p.get("corpora") or []) or "-") for name, p in (card.get("presets") or {}).items()]
    if rows:
        lines += ["", "| preset | architecture | declared training corpora |", "|---|---|---|"]
        lines += [f"| `{n}` | {_cell(a)} | {_cell(c)} |" for n, a, c in rows]
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    cards = [yaml.safe_load(p.read_text()) for p in sorted(CARDS.glob("*.yaml")) if p.stem != "corpora"]
    corpora = yaml.safe_load((CARDS / "corpora.yaml").read_text())
    table = ["### Training corpora the cards declare", "", "| corpus | contains (dataset identities) | description |", "|---|---|---|"]
    table += [f"| `{k}` | {', '.join(v.get('contains') or []) or '-'} | {_cell(v.get('description', ''))} |" for k, v in corpora.items()]
    return markdown.replace(MARKER, "\n".join(_card(c) for c in cards) + "\n" + "\n".join(table) + "\n")
