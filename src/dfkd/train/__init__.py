"""Training: one loop for teachers and students (:mod:`dfkd.train.loop`)."""

from dfkd.distill.distillers import TeacherGateError
from dfkd.train.loop import TrainResult, evaluate, train, train_one_epoch

__all__ = ["TeacherGateError", "TrainResult", "evaluate", "train", "train_one_epoch"]
