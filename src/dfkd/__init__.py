"""dfkd: lightweight deepfake face detectors by knowledge distillation."""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dfkd.inference.detector import Detector

try:
    __version__ = version("dfkd")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

__all__ = ["Detector", "__version__"]


def __getattr__(name: str) -> Any:
    """Lazy exports: ``dfkd.Detector`` imports the inference stack only when first used."""
    if name == "Detector":
        from dfkd.inference.detector import Detector

        return Detector
    raise AttributeError(f"module 'dfkd' has no attribute {name!r}")
