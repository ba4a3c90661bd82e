"""dfkd: lightweight deepfake face detectors by knowledge distillation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dfkd")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
