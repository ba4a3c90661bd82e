"""Hyper-parameter sweeps of distillation runs on an Optuna study (grid or TPE), resumable and shareable.

See :func:`run_sweep` and ``dfkd sweep --help``; the sweep file format is described in :mod:`dfkd.sweep.spec`.
Exports are lazy so that a spawned worker imports only what it uses.
"""

from __future__ import annotations

from dfkd.utils import lazy_exports

_EXPORTS = {
    "SweepRow": "dfkd.sweep.outputs",
    "SweepSummary": "dfkd.sweep.outputs",
    "default_storage": "dfkd.sweep.run",
    "run_sweep": "dfkd.sweep.run",
    "SweepSpec": "dfkd.sweep.spec",
    "grid_points": "dfkd.sweep.spec",
    "load_sweep_spec": "dfkd.sweep.spec",
    "parse_sweep_spec": "dfkd.sweep.spec",
    "resolve_base": "dfkd.sweep.spec",
    "validate_all": "dfkd.sweep.spec",
    "TrialOutcome": "dfkd.sweep.trial",
    "train_and_validate": "dfkd.sweep.trial",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
