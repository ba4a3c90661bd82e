"""A teacher made of several trained models: the mean of their fake logits, saved and loaded as one model file.

Teachers trained alike but from different seeds disagree on unseen fakes (unseen face swaps: AUC 0.84-0.93 over three
seeds of the general teacher, docs/results/generalisation.md); their mean is steadier than any one of them and is a
plain model, so everything that takes a model file (evaluate, distil online or from a cache, export) takes it too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from dfkd.card import ModelCard
from dfkd.models.registry import create_model, register_model

ENSEMBLE_NAME = "ensemble"


class Ensemble(nn.Module):
    """Mean of its members' fake logits ``[B]`` for images ``[B, 3, H, W]`` (all members see the same input)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake logits [B]: the members' mean."""
        return torch.stack([member(x) for member in self.members]).mean(dim=0)


@register_model(ENSEMBLE_NAME, role="teacher", listed=False)
def ensemble(*, members: list[dict[str, Any]] | None = None, pretrained: str | None = None) -> Ensemble:
    """An ensemble of untrained members, each ``{"name": registry name, "kwargs": {...}}`` as in a model card."""
    if members is None or pretrained is not None:
        raise ValueError(
            "an ensemble is not trained by name: train its members, then join their model files with `dfkd ensemble`"
        )
    if not isinstance(members, list) or len(members) < 2:
        raise ValueError("an ensemble needs a list of at least two members")
    built = []
    for index, member in enumerate(members):
        if not isinstance(member, dict) or not isinstance(member.get("name"), str):
            raise ValueError(f"member {index}: expected {{'name': ..., 'kwargs': {{...}}}}, got {member!r}")
        if member["name"] == ENSEMBLE_NAME:
            raise ValueError(f"member {index}: an ensemble cannot hold an ensemble (list its members instead)")
        built.append(create_model(member["name"], **dict(member.get("kwargs") or {})))
    return Ensemble(built)


def build_ensemble(paths: Sequence[str | os.PathLike[str]]) -> tuple[Ensemble, ModelCard]:
    """The models in ``paths`` as one ensemble and its card (threshold left at the default: choose one with
    ``dfkd evaluate --threshold``). The members must be fed alike: same preprocessing and face crop."""
    from dfkd.models.checkpoint import card_for, load_model

    if len(paths) < 2:
        raise ValueError("an ensemble needs at least two model files")
    members, cards = [], []
    for path in paths:
        model, card = load_model(path)
        if card.architecture.name == ENSEMBLE_NAME:
            raise ValueError(f"{path}: already an ensemble; list its member files instead")
        members.append(model)
        cards.append(card)
    first = cards[0]
    for path, card in zip(paths[1:], cards[1:], strict=True):
        if card.preprocessing != first.preprocessing:
            raise ValueError(
                f"{path}: its preprocessing {card.preprocessing.model_dump(mode='json')} differs from {paths[0]}'s "
                f"{first.preprocessing.model_dump(mode='json')}; ensemble members must see the same input"
            )
        if card.face_crop != first.face_crop:
            described = [c.face_crop.describe() if c.face_crop else "no face crop" for c in (first, card)]
            raise ValueError(
                f"{path}: trained on faces cropped as {described[1]}, {paths[0]} as {described[0]}; "
                "ensemble members must see faces framed alike"
            )
    spec = [{"name": card.architecture.name, "kwargs": dict(card.architecture.kwargs)} for card in cards]
    model = create_model(ENSEMBLE_NAME, members=spec)
    for target, source in zip(model.members, members, strict=True):
        target.load_state_dict(source.state_dict())
    model.dfkd_preprocessing = first.preprocessing.model_dump(mode="json")  # all of it: scaled_decode too
    model.eval()
    card = card_for(
        model,
        face_crop=first.face_crop,
        threshold_source="default (not chosen on data: dfkd evaluate --threshold sets it)",
        metrics={"members": [os.fspath(path) for path in paths]},
    )
    return model, card
