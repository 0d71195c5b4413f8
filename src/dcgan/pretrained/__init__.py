"""Generators trained by this toolkit's own commands, shipped inside the package with their cards.

Each model is a folder here: `card.json` (what `dcgan models` lists and the web page shows: the
data, the classes, the exact command, the hardware and time, held-out scores with their
protocol), `MODEL_CARD.md` (the same for people, with a sample grid) and, once trained,
`generator.safetensors`. A model without weights (its data cannot be downloaded
where the shipped models are trained) is listed with the command that trains it: "train it
yourself". `--model NAME` works wherever `--checkpoint` does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dcgan.errors import UserError

PRETRAINED_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ShippedModel:
    name: str
    folder: Path
    card: dict

    @property
    def file(self) -> Path | None:
        """The generator file, or None for a model to train yourself."""
        name = self.card.get("file")
        path = self.folder / name if name else None
        return path if path is not None and path.is_file() else None

    @property
    def card_path(self) -> Path:
        return self.folder / "MODEL_CARD.md"

    @property
    def description(self) -> str:
        return self.card.get("description", "")

    def weights(self) -> Path:
        """The generator file; a model shipped without weights is a one-line error naming the command that trains it."""
        if self.file is None:
            raise UserError(f"{self.name} ships without weights (its data cannot be downloaded where the models "
                            f"are trained); train it yourself: {self.card['command']}")
        return self.file

    def summary(self) -> dict:
        """One row of `dcgan models` and of `/api/models`."""
        scores = self.card.get("scores") or {}
        return {"name": self.name, "description": self.description, "data": self.card.get("data", ""),
                "classes": self.card.get("classes", []), "resolution": self.card.get("resolution"),
                "size_bytes": self.file.stat().st_size if self.file else None,
                "fid": (scores.get("inception") or {}).get("fid"),
                "fid_fast": scores.get("fid_fast"), "kid_fast": scores.get("kid_fast"),
                "class_accuracy": scores.get("class_accuracy"), "trained": self.file is not None,
                "command": self.card.get("command", ""), "card": str(self.card_path)}


def shipped_models() -> dict[str, ShippedModel]:
    """Every model of the package by name, trained or to train yourself."""
    cards = [(json.loads(path.read_text(encoding="utf-8")), path.parent) for path in PRETRAINED_DIR.glob("*/card.json")]
    cards.sort(key=lambda item: (item[0].get("order", 99), item[0]["name"]))  # the gallery opens on the first
    return {card["name"]: ShippedModel(card["name"], folder, card) for card, folder in cards}


def shipped_model(name: str) -> ShippedModel:
    """The model called `name`; an unknown name is a one-line error listing the valid ones."""
    models = shipped_models()
    if name not in models:
        raise UserError(f"unknown model {name[:60]!r}; shipped models: {', '.join(models)} (see `dcgan models`)")
    return models[name]


def model_file(name: str) -> Path:
    """The generator file of a shipped model (see ShippedModel.weights)."""
    return shipped_model(name).weights()


def trained_models() -> list[ShippedModel]:
    return [model for model in shipped_models().values() if model.file is not None]
