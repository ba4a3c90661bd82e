"""Label convention: fake is the positive class everywhere (REAL = 0, FAKE = 1).

The reference used torchvision ImageFolder, whose alphabetical order gave fake = 0, real = 1; dfkd does not.
"""

REAL = 0
FAKE = 1
LABEL_NAMES: dict[int, str] = {REAL: "real", FAKE: "fake"}
LABEL_IDS: dict[str, int] = {name: idx for idx, name in LABEL_NAMES.items()}


def label_id(name: str) -> int:
    """Map ``"real"``/``"fake"`` (any case) to 0/1."""
    try:
        return LABEL_IDS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown label {name!r}: expected 'real' or 'fake'") from None
