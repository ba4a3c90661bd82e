"""Helpers of the training tests."""

from __future__ import annotations


class SimulatedInterruption(KeyboardInterrupt):
    """Raised from a step callback to stop a run as a kill would (after the step and its periodic checkpoint)."""
