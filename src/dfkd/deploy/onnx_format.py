"""How an exported ONNX file carries its model card: graph names and the ``dfkd`` entry of ``metadata_props``.

Kept free of torch: the inference path reads cards of ONNX models with onnxruntime alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dfkd.card import ModelCard, ModelFileError, card_from_json, require_file
from dfkd.utils import atomic_write

ONNX_METADATA_KEY = "dfkd"
ONNX_INPUT_NAME = "images"
ONNX_OUTPUT_NAME = "fake_logits"


def write_onnx_card(model_proto: Any, card: ModelCard) -> None:
    """Set (or replace) the ``dfkd`` card in an ``onnx.ModelProto``'s ``metadata_props``."""
    for index in reversed(range(len(model_proto.metadata_props))):
        if model_proto.metadata_props[index].key == ONNX_METADATA_KEY:
            del model_proto.metadata_props[index]
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(card.to_json_dict(), sort_keys=True)


def save_onnx_proto(model_proto: Any, out_path: Path) -> None:
    """Write an ``onnx.ModelProto`` to ``out_path`` atomically."""
    with atomic_write(out_path, "wb") as handle:
        handle.write(model_proto.SerializeToString())


def open_onnx_session(path: str | Path, threads: int | None = None, *, spin: bool = True) -> Any:
    """An onnxruntime CPU session of ``path``; a missing or unloadable file is an :class:`ModelFileError`.

    ``spin=False``: the intra-op threads sleep between runs instead of spinning (onnxruntime's default), so they leave
    the cores to other work between batches (the detection pipeline's decoding threads).
    """
    import onnxruntime as ort

    require_file(Path(path))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own Fail / InvalidProtobuf types
        raise ModelFileError(f"{path}: not a loadable ONNX model ({type(error).__name__}: {error})") from None


def session_card(session: Any, source: str) -> ModelCard:
    """The validated card embedded in an open session's model."""
    raw = session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
    if raw is None:
        raise ModelFileError(f"{source}: an ONNX file without dfkd metadata (export it with `dfkd export`)")
    return card_from_json(raw, source)


def read_onnx_card(path: str | Path) -> ModelCard:
    """The model card embedded in an exported ONNX file, without running it."""
    return session_card(open_onnx_session(path), str(path))
