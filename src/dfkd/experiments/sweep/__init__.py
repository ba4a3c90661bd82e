"""Hyper-parameter sweeps of distillation runs on an Optuna study (grid or TPE), resumable and shareable.

See :func:`run_sweep` and ``dfkd sweep --help``; the sweep file format is described in
:mod:`dfkd.experiments.sweep.spec`.
Exports are lazy so that a spawned worker imports only what it uses.
"""

from __future__ import annotations

from dfkd.utils import lazy_exports

_EXPORTS = {
    "SweepRow": "dfkd.experiments.sweep.outputs",
    "SweepSummary": "dfkd.experiments.sweep.outputs",
    "default_storage": "dfkd.experiments.sweep.run",
    "run_sweep": "dfkd.experiments.sweep.run",
    "SweepSpec": "dfkd.experiments.sweep.spec",
    "grid_points": "dfkd.experiments.sweep.spec",
    "load_sweep_spec": "dfkd.experiments.sweep.spec",
    "parse_sweep_spec": "dfkd.experiments.sweep.spec",
    "resolve_base": "dfkd.experiments.sweep.spec",
    "validate_all": "dfkd.experiments.sweep.spec",
    "TrialOutcome": "dfkd.experiments.sweep.trial",
    "train_and_validate": "dfkd.experiments.sweep.trial",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
