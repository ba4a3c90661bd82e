"""ONNX export: parity with PyTorch, dynamic batch, metadata round trip, INT8 accuracy, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dfkd.cli import app
from dfkd.data.preprocess import preprocess_batch
from dfkd.deploy.onnx import export_onnx, quantize_int8
from dfkd.deploy.onnx_format import read_onnx_card
from dfkd.inference.detector import Detector
from dfkd.models import load_model, read_model_card

runner = CliRunner()


def test_fp32_export_matches_pytorch_on_real_images_at_any_batch_size(
    tiny_model: Path, real_images: list, tmp_path: Path
) -> None:
    out = tmp_path / "tiny.onnx"
    report = export_onnx(tiny_model, out, check_images=real_images)
    assert report["parity"]["passed"] and report["parity"]["images"] == "images"
    assert report["parity"]["max_abs_logit_diff"] <= 1e-4
    assert report["parity"]["n_images"] == len(real_images)

    model, card = load_model(tiny_model)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    images = [Image.open(p).convert("RGB") if isinstance(p, Path) else p for p in real_images]
    batch = preprocess_batch(images * 2, card.preprocessing)
    for size in sorted({1, min(3, len(batch)), len(batch)}):  # whatever the number of images
        onnx_logits = session.run(None, {"images": batch[:size]})[0]
        with torch.inference_mode():
            torch_logits = model(torch.from_numpy(batch[:size])).numpy()
        assert onnx_logits.shape == (size,)
        assert np.abs(onnx_logits - torch_logits).max() <= 1e-4


def test_metadata_round_trips_through_the_onnx_file(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "meta.onnx"
    export_onnx(tiny_model, out, opset=17)
    card = read_model_card(tiny_model)
    embedded = read_onnx_card(out)
    assert embedded.model_copy(update={"export": None}) == card
    assert embedded.export["precision"] == "fp32" and embedded.export["opset"] == 17
    assert embedded.export["parity"]["images"] == "synthetic"
    proto = onnx.load(str(out))
    assert json.loads({p.key: p.value for p in proto.metadata_props}["dfkd"]) == embedded.to_json_dict()
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert Detector.load(out, faces="none").card == embedded


def test_int8_accuracy_stays_within_one_point_of_fp32(easy_model: Path, easy_manifest: Path, tmp_path: Path) -> None:
    fp32 = tmp_path / "easy.onnx"
    export_onnx(easy_model, fp32)
    report = quantize_int8(fp32, tmp_path / "easy.int8.onnx", easy_manifest, n_calibration=16)
    assert report["n_images"] == 16 and report["accuracy_fp32"] > 90
    assert abs(report["accuracy_int8"] - report["accuracy_fp32"]) <= 1.0 and report["passed"]
    embedded = read_onnx_card(tmp_path / "easy.int8.onnx")
    assert embedded.export["precision"] == "int8"
    assert embedded.export["quantization"]["n_calibration"] == 16
    assert embedded.metrics["int8_val_accuracy"] == report["accuracy_int8"]
    graph = onnx.load(str(tmp_path / "easy.int8.onnx")).graph
    assert "QuantizeLinear" in {node.op_type for node in graph.node}
    # The image-reading stem conv stays fp32: its input is the graph input itself, not a dequantised copy.
    stem = embedded.export["quantization"]["fp32_nodes"]
    assert len(stem) == 1
    assert graph.input[0].name in next(node for node in graph.node if node.name == stem[0]).input
    quantize_int8(fp32, tmp_path / "all.int8.onnx", easy_manifest, n_calibration=16, fp32_stem=False)
    all_graph = onnx.load(str(tmp_path / "all.int8.onnx")).graph
    first_conv = next(node for node in all_graph.node if node.op_type == "Conv")
    assert all_graph.input[0].name not in first_conv.input
    fp32_probs = [r["fake_prob"] for r in Detector.load(fp32, faces="none").predict([Image.new("RGB", (40, 40))])]
    int8_probs = [
        r["fake_prob"]
        for r in Detector.load(tmp_path / "easy.int8.onnx", faces="none").predict([Image.new("RGB", (40, 40))])
    ]
    assert int8_probs == pytest.approx(fp32_probs, abs=0.05)


def test_cli_export_int8_prints_parity_and_accuracy(easy_model: Path, easy_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.onnx"
    arguments = ["export", str(easy_model), "--format", "onnx", "--int8", "--calibration", str(easy_manifest)]
    result = runner.invoke(app, [*arguments, "--out", str(out), "--n-calibration", "16"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "max |Δ logit|" in output and "INT8" in output and "fp32" in output and "val accuracy" in output
    assert out.is_file() and (tmp_path / "cli.fp32.onnx").is_file()
    assert read_onnx_card(out).export["parity"]["images"] == "images"  # checked on the manifest's val images


def test_cli_export_refuses_bad_requests(tiny_model: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", str(tiny_model), "--int8", "--out", str(tmp_path / "x.onnx")])
    assert result.exit_code == 2 and "--calibration" in result.output
    result = runner.invoke(app, ["export", str(tiny_model), "--format", "tflite", "--out", str(tmp_path / "x.tfl")])
    assert result.exit_code == 2 and "unsupported format" in result.output
    result = runner.invoke(app, ["export", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "x.onnx")])
    assert result.exit_code == 2 and "not found" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("name", "kwargs", "before_stem"), [("resnet8_fast_hp", {}, "Concat"), ("resnet8_fast", {"grey": True}, "Tile")]
)
def test_int8_keeps_input_layers_before_the_stem_in_fp32(
    name: str, kwargs: dict, before_stem: str, tmp_path: Path
) -> None:
    from dfkd.deploy.onnx import _image_input_nodes
    from dfkd.models import create_model, save_model
    from dfkd.models.registry import make_preprocessing

    model = create_model(name, **kwargs).eval()
    model.dfkd_preprocessing = make_preprocessing(72, 64)
    save_model(model, tmp_path / "m.safetensors")
    export_onnx(tmp_path / "m.safetensors", tmp_path / "m.onnx")
    graph = onnx.load(str(tmp_path / "m.onnx"))
    ops = {node.name: node.op_type for node in graph.graph.node}
    kept = [ops[node] for node in _image_input_nodes(graph)]
    # The parameter-free input layer's pixel operations, then the one stem Conv; shape arithmetic is not kept.
    assert kept[-2:] == [before_stem, "Conv"] and kept.count("Conv") == 1 and "Shape" not in kept
