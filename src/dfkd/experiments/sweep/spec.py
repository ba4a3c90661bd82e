"""The sweep file: what to vary, how to search, what to optimise; and the trial configs it implies.

A sweep file looks like::

    base: seed_student_kd_kl.yaml        # a train config (beside this file, else from the working folder) or a mapping
    mode: grid                           # grid | tpe
    objective: val_auc                   # val_auc | val_loss | val_accuracy (validation split only)
    grid: {optim.lr: [1.0e-5, 1.0e-4], scheduler.name: [none, plateau]}
    space: {optim.lr: {low: 1.0e-5, high: 1.0e-3, log: true}, distill.loss: {choices: [kl, mse]}}   # tpe mode
    n_trials: 20
    pruner: median                       # median | none, or {name: median, startup_trials: 5, warmup_epochs: 1}

Every trial's config is ``base`` ← ``--set`` overrides ← the trial's parameters, validated by
:func:`dfkd.config.validate_config` before anything trains.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dfkd.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    read_config_file,
    read_yaml,
    set_dotted,
    validate_config,
    validation_lines,
)

logger = logging.getLogger(__name__)

Scalar = bool | int | float | str | None
OBJECTIVE_DIRECTIONS = {"val_auc": "maximize", "val_accuracy": "maximize", "val_loss": "minimize"}
DEFAULT_TPE_TRIALS = 20
# Keys whose change would make one shared teacher-logit cache wrong for some trials.
CACHE_KEYS = (
    "data.manifest",
    "data.resize_size",
    "data.input_size",
    "data.augment",
    "teacher.model",
    "teacher.cache",
    "teacher.online",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParamRange(_Strict):
    """One TPE dimension: ``choices`` (categorical) or ``low``/``high`` (float or int, optionally log or stepped)."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    type: Literal["float", "int"] = "float"
    choices: list[Scalar] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ParamRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            if not self.choices:
                raise ValueError("choices must not be empty")
            return self
        if self.low is None or self.high is None:
            raise ValueError("needs choices, or both low and high")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("an int range needs whole-number low and high")
        return self

    def candidates(self) -> list[Scalar]:
        """Values that must all make valid configs: every choice, or both bounds."""
        if self.choices is not None:
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return [int(self.low), int(self.high)]
        return [self.low, self.high]


class PrunerSpec(_Strict):
    """Median pruning of trials whose per-epoch objective falls below the median of earlier trials at that epoch."""

    name: Literal["median", "none"] = "median"
    startup_trials: int = Field(5, ge=0)
    warmup_epochs: int = Field(1, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class SweepSpec(_Strict):
    """A validated sweep file."""

    base: str | dict[str, Any] = Field(default_factory=dict)
    mode: Literal["grid", "tpe"] = "grid"
    objective: Literal["val_auc", "val_loss", "val_accuracy"] = "val_auc"
    direction: Literal["maximize", "minimize"] | None = None
    grid: dict[str, list[Scalar]] = Field(default_factory=dict)
    space: dict[str, ParamRange] = Field(default_factory=dict)
    n_trials: int | None = Field(None, ge=1)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    study_name: str | None = None
    seed: int = 0
    test_best: bool = True

    @field_validator("grid")
    @classmethod
    def _grid_lists(cls, grid: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        for key, values in grid.items():
            if not values:
                raise ValueError(f"{key}: needs at least one value")
            if len({json.dumps(v) for v in values}) != len(values):
                raise ValueError(f"{key}: repeated values {values}")
        return grid

    @model_validator(mode="after")
    def _mode_fits(self) -> SweepSpec:
        if self.mode == "grid":
            if not self.grid:
                raise ValueError("mode grid needs a non-empty 'grid' mapping")
            if self.space:
                raise ValueError("mode grid uses 'grid'; 'space' is for mode tpe")
        else:
            if not self.space:
                raise ValueError("mode tpe needs a non-empty 'space' mapping")
            if self.grid:
                raise ValueError("mode tpe uses 'space'; 'grid' is for mode grid")
        for key in [*self.grid, *self.space]:
            if len([k for k in key.split(".") if k]) < 2:
                raise ValueError(f"{key!r}: parameters are config keys like 'optim.lr'")
        return self

    @property
    def resolved_direction(self) -> str:
        """``direction`` when given, else the objective's natural one."""
        return self.direction or OBJECTIVE_DIRECTIONS[self.objective]

    @property
    def params(self) -> list[str]:
        """The varied config keys, in declaration order."""
        return list(self.grid) if self.mode == "grid" else list(self.space)

    def target_trials(self, n_trials: int | None = None) -> int:
        """How many finished trials the study should hold: grid size (capped by n) or n / ``n_trials``."""
        if self.mode == "grid":
            size = len(grid_points(self))
            return min(size, n_trials) if n_trials else min(size, self.n_trials or size)
        return n_trials or self.n_trials or DEFAULT_TPE_TRIALS

    def signature(self) -> str:
        """A hash of the search definition; a study resumed or shared must have been made with the same one."""
        payload = {
            "mode": self.mode,
            "objective": self.objective,
            "direction": self.resolved_direction,
            "grid": self.grid,
            "space": {k: v.model_dump() for k, v in self.space.items()},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def resolved_base(base: dict[str, Any]) -> dict[str, Any]:
    """The base config the trials start from, every setting resolved (``model_dump(mode="json")``): what a study
    records, so a sweep resumed with another base or other ``--set`` overrides is told apart."""
    return validate_config(copy.deepcopy(base), origin="base").model_dump(mode="json")


def _spec_error(error: ValidationError, origin: str) -> ConfigError:
    return ConfigError(f"{origin}: invalid sweep file\n  " + "\n  ".join(validation_lines(error)))


def parse_sweep_spec(data: dict[str, Any], *, origin: str = "sweep") -> SweepSpec:
    """Validate a sweep mapping; errors name each bad key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level of a sweep file must be a mapping")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as error:
        raise _spec_error(error, origin) from None


def load_sweep_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """Read and validate a sweep YAML file."""
    return parse_sweep_spec(read_yaml(path, "sweep file") or {}, origin=str(path))


def resolve_base(
    spec: SweepSpec, overrides: list[str] | None = None, *, spec_path: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The base config as a nested dict: the file (beside the sweep file, else from the working folder) ← overrides."""
    if isinstance(spec.base, dict):
        data = copy.deepcopy(spec.base)
        origin = "base"
    else:
        candidates = [Path(spec.base)]
        if spec_path is not None and not Path(spec.base).is_absolute():
            candidates.insert(0, Path(spec_path).parent / spec.base)
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            looked = ", ".join(map(str, candidates))
            raise ConfigError(f"base: config file {spec.base!r} not found (looked at {looked})")
        data = read_config_file(found)
        origin = str(found)
    apply_overrides(data, list(overrides or []))
    for text in overrides or []:
        key = text.split("=", 1)[0].strip()
        if key in spec.params:
            logger.warning("--set %s is overridden in every trial: %s is a swept parameter", text, key)
    validate_config(data, origin=origin)
    return data


def get_dotted(data: dict[str, Any], key: str, default: Any = None) -> Any:
    """Read ``a.b.c`` from a nested dict (``default`` when absent)."""
    node: Any = data
    for part in (p for p in key.split(".") if p):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def trial_config(base: dict[str, Any], params: dict[str, Any], *, origin: str = "trial") -> RunConfig:
    """Validate base ← params (dotted keys) into a :class:`RunConfig`."""
    data = copy.deepcopy(base)
    for key, value in params.items():
        set_dotted(data, key, value)
    return validate_config(data, origin=origin)


def grid_points(spec: SweepSpec) -> list[dict[str, Scalar]]:
    """Every combination of the grid, in declaration order (last key varies fastest)."""
    keys = list(spec.grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(spec.grid[k] for k in keys))]


def point_key(params: dict[str, Any]) -> str:
    """A canonical text for a parameter set (the identity of a grid point)."""
    return json.dumps({k: params[k] for k in sorted(params)}, sort_keys=True)


def validate_all(spec: SweepSpec, base: dict[str, Any]) -> int:
    """Build and validate every grid point (or every TPE choice and bound); returns how many configs were checked.

    Raises:
        ConfigError: naming the bad key and the trial parameters that produced it.
    """
    if spec.mode == "grid":
        points = grid_points(spec)
        for params in points:
            trial_config(base, params, origin=f"sweep trial {params}")
        return len(points)
    checked = 0
    for key, dimension in spec.space.items():
        for value in dimension.candidates():
            trial_config(base, {key: value}, origin=f"sweep space {key}={value!r}")
            checked += 1
    return checked


def check_finite(value: float | None) -> bool:
    """True for a real, finite number."""
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)
