"""One trained tower -> ONNX files that carry their own ModelCard.

``export_onnx`` writes ``<model_id>.onnx`` (float32) and, given calibration images,
``<model_id>.int8.onnx`` (onnxruntime static quantization, QDQ format, per-channel int8 weights).
The ModelCard goes into the ONNX ``metadata_props`` under ``siamid.model_card``: the runtime trusts
only the card, so preprocessing, threshold and model id can never be separated from the weights.

Every export is checked: the fp32 file must reproduce the torch tower (atol 1e-4) or ModelError is
raised; the int8 file's drift from fp32 on the calibration images is measured and written into its
card's ``metrics`` (``int8_cosine_min``, ``int8_max_drift``), so a user can judge it against the
threshold.

This module needs torch and onnx (the ``train`` extra). ``read_card`` is re-exported from
``siamid.runtime``, which reads cards with onnxruntime alone.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from . import __version__
from .config import PreprocessConfig
from .errors import ModelError
from .cardfile import write_card
from .runtime import read_card
from .types import ModelCard

__all__ = ["ExportResult", "calibrate_files", "export_onnx", "export_run", "model_id_for", "read_card", "write_card",
           "INT8_MAX_EER_COST", "OPSET"]

#: ONNX opset of exported files: run by onnxruntime >= 1.14 and by the usual converters.
OPSET = 17
#: The fp32 file must match the torch tower to this absolute tolerance.
FP32_ATOL = 1e-4
# Only the heavy linear ops are quantized: everything after the last Gemm (the L2 normalisation,
# a ReduceL2 + Div) stays float, since quantizing a unit-norm division costs accuracy for no speed.
# Relu is listed so that the quantizer folds a Relu after a Conv into the Conv's output range
# ([0, max], zero point 0): one rounding instead of two, all 256 levels for the values a ReLU
# keeps, and one tensor instead of two in a microcontroller's arena (TFLite fuses the clamp).
_QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "Relu"]
_CALIBRATION_BATCH = 16


@dataclass(frozen=True)
class ExportResult:
    """What ``export_onnx`` wrote. ``int8_path``/``int8_card`` are None without calibration images.

    ``int8_max_drift`` is the largest Euclidean distance between an int8 and an fp32 signature of
    the same calibration image: compare it with the card's threshold.
    """

    fp32_path: Path
    int8_path: Path | None
    card: ModelCard
    int8_card: ModelCard | None = None
    int8_max_drift: float | None = None


def model_id_for(tower: torch.nn.Module, preprocess: Mapping[str, Any] | None = None) -> str:
    """``"<architecture>-<12 hex>"``: the architecture and a SHA-256 of the weights.

    The hash covers every state_dict entry in order: its name, dtype, shape and raw bytes, and
    each ``preprocess`` value (a card's table) that differs from the ``PreprocessConfig``
    default: a signature is the tower applied to the preprocessed image, so two models share an
    id exactly when they turn the same image into the same signature. Default values are left
    out, so adding a preprocessing field never changes an existing model's id.
    """
    architecture = getattr(tower, "architecture", None)
    if not architecture:
        raise ModelError(
            f"{type(tower).__name__} has no 'architecture' attribute; create it with siamid.nets"
        )
    digest = hashlib.sha256()
    for name, value in tower.state_dict().items():
        if not isinstance(value, torch.Tensor):
            digest.update(f"{name}:{value!r};".encode())
            continue
        t = value.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    defaults = vars(PreprocessConfig())
    changed = {k: v for k, v in (preprocess or {}).items() if defaults.get(k, None) != v}
    if changed:
        digest.update(json.dumps(changed, sort_keys=True).encode())
    return f"{architecture}-{digest.hexdigest()[:12]}"


def export_onnx(
    tower: torch.nn.Module,
    card: ModelCard,
    out: str | Path,
    calibration: np.ndarray | None = None,
) -> ExportResult:
    """Write ``<out>/<model_id>.onnx`` and, with ``calibration``, ``<out>/<model_id>.int8.onnx``.

    ``card`` describes the tower (its ``model_id`` and ``quantization`` are filled in here; its
    architecture, embedding size, input size and channels must match the tower's). ``calibration``
    is float32 (N, C, H, W) in [0, 1]: preprocessed images like those the model will see, a few
    hundred of the training split. The input is named ``image`` (dynamic batch), the output
    ``signature``. Raises ModelError if the tower and card disagree or the fp32 file does not
    reproduce the tower.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(tower).cpu().eval()
    model_id = model_id_for(model, card.preprocess)
    shape = _check_card(model, card)
    versions = dict(card.versions)
    versions.setdefault("siamid", __version__)
    versions.setdefault("torch", torch.__version__.split("+")[0])
    versions.update(onnx=onnx.__version__, onnxruntime=ort.__version__)
    fp32_card = card.with_changes(model_id=model_id, quantization="fp32", versions=versions)

    if calibration is not None:
        calibration = np.ascontiguousarray(calibration, dtype=np.float32)
        if calibration.ndim != 4 or calibration.shape[1:] != shape or len(calibration) == 0:
            raise ModelError(
                f"calibration images must be float32 (N, {', '.join(map(str, shape))}) with "
                f"N >= 1, got shape {calibration.shape}; pass preprocessed network inputs"
            )

    fp32_path = out / f"{model_id}.onnx"
    with tempfile.TemporaryDirectory(prefix="siamid-export-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        _torch_export(model, shape, raw)
        proto = onnx.load(str(raw))
        _describe(proto, fp32_card)
        onnx.checker.check_model(proto)
        _save_atomically(proto, fp32_path)
        write_card(fp32_path, fp32_card)
        _check_fp32(model, fp32_path, shape, calibration)
        if calibration is None:
            return ExportResult(fp32_path=fp32_path, int8_path=None, card=fp32_card)

        int8_path = out / f"{model_id}.int8.onnx"
        quantized = Path(tmp) / "int8.onnx"
        _quantize(raw, quantized, Path(tmp), calibration)
        cosine_min, drift = _int8_agreement(fp32_path, quantized, calibration)
        metrics = dict(card.metrics)
        metrics.update(int8_cosine_min=cosine_min, int8_max_drift=drift)
        # The int8 file computes another function: it gets its own id, and whether templates of
        # the two files may be compared is measured (export_run), never assumed.
        int8_card = fp32_card.with_changes(model_id=f"{model_id}.int8", quantization="int8",
                                           metrics=metrics)
        proto = onnx.load(str(quantized))
        _describe(proto, int8_card)
        _save_atomically(proto, int8_path)
        write_card(int8_path, int8_card)
    return ExportResult(
        fp32_path=fp32_path,
        int8_path=int8_path,
        card=fp32_card,
        int8_card=int8_card,
        int8_max_drift=drift,
    )


# -- helpers -------------------------------------------------------------------------------------


def _check_card(tower: torch.nn.Module, card: ModelCard) -> tuple[int, int, int]:
    """The (C, H, W) input shape, after checking that the card describes this tower."""
    expected = {
        "architecture": getattr(tower, "architecture", None),
        "embedding_size": getattr(tower, "embedding_size", None),
        "input_size": tuple(getattr(tower, "input_size", ()) or ()),
        "channels": getattr(tower, "in_channels", None),
    }
    for name, value in expected.items():
        if getattr(card, name) != value:
            raise ModelError(
                f"ModelCard.{name} is {getattr(card, name)!r} but the tower has {value!r}; "
                "build the card from the tower being exported"
            )
    h, w = card.input_size
    return (card.channels, h, w)


class _Silence(warnings.catch_warnings):
    """The TorchScript exporter warns that it is deprecated; the replacement needs onnxscript."""

    def __enter__(self) -> None:
        super().__enter__()
        warnings.simplefilter("ignore")


def _torch_export(model: torch.nn.Module, shape: tuple[int, int, int], path: Path) -> None:
    # dynamo=False: the torch.export-based exporter needs onnxscript, not a dependency here, and
    # the classic exporter handles these plain conv towers exactly.
    dummy = torch.zeros((1, *shape), dtype=torch.float32)
    try:
        with _Silence(), torch.no_grad():
            torch.onnx.export(
                model,
                (dummy,),
                str(path),
                input_names=["image"],
                output_names=["signature"],
                dynamic_axes={"image": {0: "batch"}, "signature": {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as exc:  # torch raises many types here; all mean "cannot export this tower"
        raise ModelError(f"torch.onnx.export failed for {type(model).__name__}: {exc}") from exc
    _fold_constants(path)


def _fold_constants(path: Path) -> None:
    """Rewrite the exported graph with onnxruntime's basic optimizations: constant subgraphs the
    TorchScript exporter leaves (a padding's index arithmetic, for one) folded, a constant Pad
    fused into the Conv after it. Standard ONNX operators only, so shape inference (and
    ``siamid profile``'s MAC count) sees every layer's size."""
    folded = path.with_name(path.stem + ".folded.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    proto = onnx.load(str(folded))
    used = {node.domain for node in proto.graph.node}
    kept = [op for op in proto.opset_import if op.domain in used or op.domain in ("", "ai.onnx")]
    del proto.opset_import[:]
    proto.opset_import.extend(kept)
    onnx.save(proto, str(path))
    folded.unlink()


def _describe(proto: onnx.ModelProto, card: ModelCard) -> None:
    """Producer and doc string; the card itself goes in with ``cardfile.write_card``."""
    proto.doc_string = f"siamid signature tower {card.model_id} ({card.quantization})"
    proto.producer_name = "siamid"
    proto.producer_version = __version__


def _save_atomically(proto: onnx.ModelProto, path: Path) -> None:
    """Write to a temporary file beside ``path``, then rename: no half-written models."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        onnx.save(proto, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _check_fp32(
    model: torch.nn.Module, path: Path, shape: tuple[int, int, int], calibration: np.ndarray | None
) -> None:
    """Run the written file and the tower on the same inputs; ModelError if they differ."""
    # A fixed seed: the check must give the same verdict every time for the same tower.
    probe = np.random.default_rng(0).random((3, *shape), dtype=np.float32)
    if calibration is not None:
        probe = np.concatenate([probe, calibration[:5]])
    with torch.no_grad():
        want = model(torch.from_numpy(probe)).numpy()
    got = _session(path).run(["signature"], {"image": probe})[0]
    if got.shape != want.shape or not np.allclose(got, want, atol=FP32_ATOL, rtol=0):
        err = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("nan")
        path.unlink(missing_ok=True)
        raise ModelError(
            f"exported {path.name} does not reproduce the torch tower (max abs difference "
            f"{err:.2e} > {FP32_ATOL}, shapes {got.shape} vs {want.shape}); the tower uses an "
            "operation the ONNX exporter translates differently"
        )


class _Batches(CalibrationDataReader):
    """Feeds calibration images to the quantizer in small batches."""

    def __init__(self, images: np.ndarray) -> None:
        self._batches = [
            {"image": images[i : i + _CALIBRATION_BATCH]}
            for i in range(0, len(images), _CALIBRATION_BATCH)
        ]
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._batches):
            return None
        self._next += 1
        return self._batches[self._next - 1]

    def rewind(self) -> None:
        self._next = 0


def _quantize(raw: Path, out: Path, tmp: Path, calibration: np.ndarray) -> None:
    prepared = tmp / "prepared.onnx"
    try:
        # Shape inference + graph optimisation first, as onnxruntime recommends before quantizing.
        quant_pre_process(str(raw), str(prepared), skip_symbolic_shape=False)
    except Exception:  # pre-processing is an optimisation; quantizing the raw graph also works
        prepared = raw
    try:
        with _Silence():
            quantize_static(
                str(prepared),
                str(out),
                _Batches(calibration),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=_QUANTIZED_OPS,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            )
    except Exception as exc:
        raise ModelError(f"int8 quantization failed: {exc}") from exc


def _int8_agreement(fp32: Path, int8: Path, images: np.ndarray) -> tuple[float, float]:
    """(lowest cosine, largest Euclidean distance) between int8 and fp32 signatures."""
    a = _session(fp32).run(["signature"], {"image": images})[0]
    b = _session(int8).run(["signature"], {"image": images})[0]
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    cosine = np.sum(a * b, axis=1) / np.maximum(na * nb, 1e-12)
    drift = np.linalg.norm(a - b, axis=1)
    return float(cosine.min()), float(drift.max())


# -- a trained run -> shippable model files ------------------------------------------------------

#: The most validation EER (a fraction: 0.005 = half a point) an int8 file may lose against its
#: fp32 original, alone or with templates enrolled by the other file, before export refuses it
#: (alone) or declares their templates incompatible (mixed).
INT8_MAX_EER_COST = 0.005


def _onnx_embed(path: Path, images: np.ndarray) -> np.ndarray:
    """Signatures of preprocessed images through the exported file (the runtime)."""
    from .runtime import Embedder

    return Embedder(path).embed_prepared(images)


def _fvc_eer(a: np.ndarray, ids, b: np.ndarray | None = None) -> float:
    """FVC-protocol EER of signatures ``a``; with ``b``, of ``a`` (templates) against ``b``
    (probes) of the same images made by another file."""
    from .evaluation import evaluate_embeddings
    from .pairs import fvc_pairs

    return float(evaluate_embeddings(a, list(ids), fvc_pairs(list(ids)), probes=b).eer)


def export_run(run_dir: str | Path, out: str | Path, int8: bool = True,
               calibration_images: int = 256, allow_int8_drift: bool = False,
               progress=None) -> ExportResult:
    """Export a training run's best checkpoint with its preprocessing, calibration and provenance.

    Each exported file is calibrated on its own outputs (``siamid.calibration``) over the run's
    validation split, and its validation (and test, where there is one) EER is measured on the
    file itself. The int8 file gets its own model id (``<fp32 id>.int8``); ModelError, naming the
    numbers, if its validation EER is more than ``INT8_MAX_EER_COST`` above the fp32 file's,
    unless ``allow_int8_drift``. The two files list each other in ``compatible_ids`` only if
    fp32 templates probed by int8 signatures stay within the same cost.
    """
    from .calibration import Provenance, today
    from .config import load_config, to_dict
    from .dataset import Dataset, load_splits, synthetic_sensor
    from .nets import count_parameters
    from .training import build_tower, image_set, load_data, load_weights

    run_dir = Path(run_dir)
    for name in ("config.toml", "best.pt", "splits.json"):
        if not (run_dir / name).exists():
            raise ModelError(f"{run_dir} is not a finished run: {name} is missing (train it first)")
    config = load_config(run_dir / "config.toml")
    tower = build_tower(config)
    load_weights(tower, run_dir)
    tower.eval()
    data = load_data(config)
    splits = load_splits(run_dir / "splits.json", data)
    rng = np.random.default_rng(config.train.seed)
    train_entries = sorted(splits.train.entries, key=lambda e: e.id)
    pick = rng.choice(len(train_entries), min(calibration_images, len(train_entries)), replace=False)
    calib_ds = Dataset(splits.train.name, tuple(train_entries[i] for i in sorted(pick)))
    calibration = image_set(calib_ds, config.preprocess).images.astype(np.float32) / 255.0
    card = ModelCard(
        model_id="", architecture=tower.architecture, embedding_size=tower.embedding_size,
        input_size=tower.input_size, channels=tower.in_channels,
        preprocess=to_dict(config.preprocess), threshold=1.0,
        threshold_fmr=config.train.target_fmr, quantization="fp32",
        trained_on=data.manifest_hash(), metrics={"parameters": count_parameters(tower)},
    )
    result = export_onnx(tower, card, out, calibration if int8 else None)

    roots = config.data.root if isinstance(config.data.root, list) else [config.data.root]
    sensors = {synthetic_sensor(r) for r in roots}
    synthetic = None not in sensors
    val = image_set(splits.val, config.preprocess, progress=progress)
    source = Provenance("validation", name=", ".join(map(str, roots)),
                        set_hash=splits.val.manifest_hash(), n_images=len(val),
                        n_identities=len(splits.val.identities),
                        sensor=", ".join(sorted(s for s in sensors if s)) if synthetic else "",
                        synthetic=synthetic, date=today())
    test = image_set(splits.test, config.preprocess) if splits.test.entries else None
    files = {"fp32": (result.fp32_path, result.card)}
    if result.int8_path is not None:
        files["int8"] = (result.int8_path, result.int8_card)
    cards = calibrate_files(files, val.images, val.ids, config.train.target_fmr, source,
                            test=(test.images, test.ids) if test is not None else None,
                            allow_int8_drift=allow_int8_drift)
    return ExportResult(result.fp32_path, result.int8_path, cards["fp32"], cards.get("int8"),
                        result.int8_max_drift)


def calibrate_files(files: dict[str, tuple[Path, ModelCard]], images: np.ndarray, ids,
                    target_fmr: float, source, test: tuple[np.ndarray, tuple] | None = None,
                    allow_int8_drift: bool = False) -> dict[str, ModelCard]:
    """Calibrate an exported fp32 file and its int8 twin (``files``: kind -> (path, card)) on
    their own signatures of ``images`` (uint8 network inputs, labelled ``ids``), measure their
    validation (and ``test``) EER, apply the int8 rules, and write each card once.

    ModelError, naming the numbers, if the int8 file's EER is more than ``INT8_MAX_EER_COST``
    above the fp32 file's (the int8 file is then deleted) unless ``allow_int8_drift``; the two
    list each other in ``compatible_ids`` only if fp32 templates probed by int8 signatures stay
    within the same cost. Returns the written cards by kind.
    """
    from .calibration import calibrate, with_calibration

    signatures, cards = {}, {}
    for kind, (path, file_card) in files.items():
        signatures[kind] = _onnx_embed(path, images.astype(np.float32) / 255.0)
        metrics = dict(file_card.metrics, val_eer_fvc=_fvc_eer(signatures[kind], ids))
        if test is not None:
            metrics["test_eer_fvc"] = _fvc_eer(
                _onnx_embed(path, test[0].astype(np.float32) / 255.0), test[1])
        cal = calibrate(signatures[kind], ids, target_fmr, source)
        cards[kind] = with_calibration(file_card.with_changes(metrics=metrics), cal)
    if "int8" in cards:
        fp32_eer, int8_eer = cards["fp32"].metrics["val_eer_fvc"], cards["int8"].metrics["val_eer_fvc"]
        if int8_eer - fp32_eer > INT8_MAX_EER_COST and not allow_int8_drift:
            files["int8"][0].unlink(missing_ok=True)
            raise ModelError(
                f"int8 quantization costs {100 * (int8_eer - fp32_eer):.2f} points of validation "
                f"EER ({100 * int8_eer:.2f}% vs fp32 {100 * fp32_eer:.2f}%), more than the "
                f"{100 * INT8_MAX_EER_COST:.1f} allowed; the int8 file was not kept "
                f"({files['fp32'][0]} was). Use more calibration images, or pass "
                "--allow-int8-drift to keep it anyway")
        mixed = _fvc_eer(signatures["fp32"], ids, signatures["int8"])
        compatible = mixed - fp32_eer <= INT8_MAX_EER_COST
        model_ids = {k: c.model_id for k, c in cards.items()}
        for kind, other in (("fp32", "int8"), ("int8", "fp32")):
            extra = {"val_eer_fvc_mixed": mixed}
            if kind == "int8":
                extra["val_eer_fvc_fp32"] = fp32_eer
            cards[kind] = cards[kind].with_changes(
                compatible_ids=(model_ids[other],) if compatible else (),
                metrics=dict(cards[kind].metrics, **extra))
    for kind, (path, _) in files.items():
        write_card(path, cards[kind])
    return cards
