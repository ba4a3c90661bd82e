"""Fixtures of the training tests: a step callback that stops a run as if it had been killed."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.train.helpers import SimulatedInterruption


@pytest.fixture
def kill_after() -> Callable[[int], Callable[[int], None]]:
    """``kill_after(n)``: a ``step_callback`` for :func:`dfkd.train.train` that raises
    :class:`~tests.train.helpers.SimulatedInterruption` once the run has taken ``n`` optimiser steps."""

    def make(steps: int) -> Callable[[int], None]:
        def step_callback(global_step: int) -> None:
            if global_step >= steps:
                raise SimulatedInterruption(f"stopped after {global_step} steps")

        return step_callback

    return make
