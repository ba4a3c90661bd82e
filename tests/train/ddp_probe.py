"""Run under ``torchrun``: train as ``dfkd train`` would, recording what each rank loads and holds.

Usage: ``torchrun --nproc_per_node 2 tests/train/ddp_probe.py OUT KEY=VALUE ...``. Each rank writes
``OUT/rank<r>.json`` (the train images it loaded, per epoch) and ``OUT/rank<r>.safetensors`` (its final weights).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> None:
    out, overrides = Path(sys.argv[1]), sys.argv[2:]
    from dfkd.config import load_config
    from dfkd.data.dataset import ManifestDataset
    from dfkd.train import loop
    from dfkd.train.sampler import EpochSampler
    from dfkd.utils import save_tensors

    rank = int(os.environ["RANK"])
    seen: dict[int, list[str]] = {}
    position = {"epoch": -1}
    students = []

    original_set_position, original_getitem, original_setup = (
        EpochSampler.set_position,
        ManifestDataset.__getitem__,
        loop.setup_student,
    )

    def set_position(self, epoch: int, start: int = 0) -> None:
        if self.shuffle:  # the train sampler; validation's does not shuffle
            position["epoch"] = epoch
        original_set_position(self, epoch, start)

    def getitem(self, index: int):
        if self.split == "train":
            seen.setdefault(position["epoch"], []).append(self.samples[index].path)
        return original_getitem(self, index)

    def setup_student(*args, **kwargs):
        students.append(original_setup(*args, **kwargs))
        return students[-1]

    EpochSampler.set_position, ManifestDataset.__getitem__, loop.setup_student = set_position, getitem, setup_student
    loop.train(load_config(None, overrides), out / "run")
    (out / f"rank{rank}.json").write_text(json.dumps(seen))
    state = students[0].kept.state_dict()
    save_tensors({key: value.detach().cpu() for key, value in state.items()}, out / f"rank{rank}.safetensors")


if __name__ == "__main__":
    main()
