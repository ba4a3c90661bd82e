"""Models: the registry, ResNet8 students, teachers, parameter / FLOP counts and the self-describing model file."""

from dfkd.models import resnet_small, teacher  # noqa: F401  (importing registers the models)
from dfkd.models.checkpoint import load_model, read_model_metadata, save_model
from dfkd.models.counting import count_flops, count_params
from dfkd.models.registry import create_model, default_preprocessing, list_models, register_model
from dfkd.models.weights import ModelFileError

__all__ = [
    "ModelFileError",
    "count_flops",
    "count_params",
    "create_model",
    "default_preprocessing",
    "list_models",
    "load_model",
    "read_model_metadata",
    "register_model",
    "save_model",
]
