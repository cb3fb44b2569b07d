"""A trained model folder's card: what it was trained on, how, and what it scored (``zwz_card.json``, README.md).

``zwz train nano`` writes one into each student it evaluates; the server reads it to say on ``/health`` that the
weights are trained (a tiny model's ``zwz_tiny_model.json`` marker travels through training, so without a card
a model built by ``zwz make-model`` still counts as random however many steps it took).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["CARD_FILE", "read_card", "write_card"]

CARD_FILE = "zwz_card.json"


def read_card(folder: str | Path) -> dict[str, Any] | None:
    """The folder's card, or None when it has none; a card that is not a JSON object is an error."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        return None
    card = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(card, dict) or not isinstance(card.get("trained_on"), str):
        raise ValueError(f"{path} is not a model card (a JSON object with a 'trained_on' string)")
    return card


def write_card(folder: str | Path, card: dict[str, Any]) -> Path:
    """Write ``zwz_card.json`` and a README.md model card rendered from it; returns the JSON's path."""
    if not isinstance(card.get("trained_on"), str) or not card["trained_on"]:
        raise ValueError("a model card needs a 'trained_on' sentence")
    folder = Path(folder)
    path = folder / CARD_FILE
    path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(_markdown(card), encoding="utf-8")
    return path


def _markdown(card: dict[str, Any]) -> str:
    lines = [f"# {card.get('name', 'model')}", "", card["trained_on"], ""]
    results = card.get("results") or {}
    if results:
        lines += ["| measure | value |", "|---|---|"]
        for key, value in results.items():
            if isinstance(value, float):
                value = f"{100 * value:.1f}%"
            lines.append(f"| {key} | {value} |")
        lines.append("")
    if card.get("reproduce"):
        lines += ["Reproduce:", "", "    " + card["reproduce"], ""]
    return "\n".join(lines)
