"""Training: one loop for teachers and students."""

from dfkd.train.teacher_signal import TeacherGateError
from dfkd.train.trainer import SimulatedInterruption, TrainResult, train

__all__ = ["SimulatedInterruption", "TeacherGateError", "TrainResult", "train"]
