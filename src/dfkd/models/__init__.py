"""Models: the registry, ResNet8 students, teachers, parameter / FLOP counts and the self-describing model file."""

from dfkd.models import ensemble, resnet_small, teacher  # noqa: F401  (importing registers the models)
from dfkd.models.checkpoint import card_for, load_model, read_model_card, save_model, update_card
from dfkd.models.counting import count_flops, count_params
from dfkd.models.registry import (
    create_model,
    default_preprocessing,
    input_size_error,
    list_models,
    register_model,
)
from dfkd.models.weights import ModelFileError

__all__ = [
    "ModelFileError",
    "card_for",
    "count_flops",
    "count_params",
    "create_model",
    "default_preprocessing",
    "input_size_error",
    "list_models",
    "load_model",
    "read_model_card",
    "register_model",
    "save_model",
    "update_card",
]
