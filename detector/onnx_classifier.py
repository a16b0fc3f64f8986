"""The ONNX Runtime implementation of :class:`detector.core.classifier.Classifier`.

Models are ``detector/models/<name>.onnx`` with inputs ``beat`` (batch, 2 * leads,
WINDOW_LEN) and ``rr`` (batch, N_RR or fewer), output ``probabilities`` (batch, classes);
their metadata records the labels and the feature layout they were trained on,
checked here against :mod:`detector.core.beats` so a model never silently gets
features it was not trained for.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from detector.core import beats as feat
from detector.core.beats import BeatFeatures
from detector.core.classifier import Classification
from stream.errors import ConfigError
from stream.schemas import BeatClass

logger = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = "cnn"  # selection rule: BENCHMARKS.md "Beat classification"


def model_path(name: str, models_dir: Path = MODELS_DIR) -> Path:
    """Path of model ``name`` (a bare name in ``models_dir`` or a path to an .onnx file)."""
    path = Path(name)
    if path.suffix != ".onnx":
        path = models_dir / f"{name}.onnx"
    if not path.is_file():
        raise ConfigError(
            f"beat model {name!r} not found at {path}; choose one of {classifier_names(models_dir)} "
            "(ECGMON_MODEL / --model)"
        )
    return path


def classifier_names(models_dir: Path = MODELS_DIR) -> list[str]:
    """The beat classifiers shipped in ``models_dir`` (the autoencoder, an anomaly scorer with no
    class output, is left out: its card's family says so)."""
    out = []
    for onnx in sorted(models_dir.glob("*.onnx")) if models_dir.is_dir() else []:
        try:
            family = json.loads(onnx.with_suffix(".json").read_text()).get("family")
        except (OSError, ValueError, AttributeError):
            family = None
        if family != "autoencoder":
            out.append(onnx.stem)
    return out


def _warn_from_card(path: Path) -> None:
    """Say at load time what the model card recorded against this model's use at the bedside:
    a model whose beats let the alarm engine miss VF episodes in the DS1 check (the VF rule's
    organised-rhythm veto counts beats the model calls N or S)."""
    card_path = path.with_suffix(".json")
    if not card_path.is_file():
        return
    try:
        vf = json.loads(card_path.read_text()).get("ds1_vf_alarm_check") or {}
        found, episodes = int(vf.get("vf_detected", 0)), int(vf.get("vf_episodes", 0))
    except (ValueError, TypeError, AttributeError):
        logger.warning("beat model %s: unreadable model card %s", path.stem, card_path)
        return
    if found < episodes:
        logger.warning(
            "beat model %s raised a VF alarm for only %d of %d ventricular fibrillation episodes in "
            "its DS1 alarm check (model card %s): VF alarms may be missed with it; the default "
            "model %s raised all", path.stem, found, episodes, card_path.name, DEFAULT_MODEL)


class OnnxClassifier:
    """Batched beat classification with one ONNX Runtime session (1 intra-op thread by default)."""

    def __init__(self, path: Path, intra_op_threads: int = 1) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        outputs = [o.name for o in self._session.get_outputs()]
        if "probabilities" not in outputs:
            raise ConfigError(
                f"{path.name} is not a beat classifier (outputs {outputs}, no 'probabilities'; the "
                "autoencoder scores beats' anomaly, its card gives the DS2 AUROC, it labels none); choose "
                f"one of {classifier_names(path.parent)} (ECGMON_MODEL / --model)"
            )
        meta = self._session.get_modelmeta().custom_metadata_map
        self._name = path.stem
        self._labels = tuple(BeatClass(x) for x in meta.get("labels", "N,S,V,F,Q").split(","))
        self._n_leads = int(meta.get("n_leads", "1"))
        self._n_rr = self._check_layout(meta, path)
        _warn_from_card(path)

    @classmethod
    def load(cls, name: str, intra_op_threads: int = 1, models_dir: Path = MODELS_DIR) -> OnnxClassifier:
        return cls(model_path(name, models_dir), intra_op_threads)

    @staticmethod
    def _check_layout(meta: dict[str, str], path: Path) -> int:
        """Raise unless the model was trained on these features; return how many RR features
        it takes (features are only appended, so a model trained before one was added
        takes the first ones)."""
        expected = {
            "model_fs_hz": str(feat.MODEL_FS_HZ),
            "window_pre": str(feat.WINDOW_PRE),
            "window_post": str(feat.WINDOW_POST),
            "rr_features": ",".join(feat.RR_FEATURES),
        }
        n_rr = feat.N_RR
        if "rr_features" in meta:
            trained = tuple(meta["rr_features"].split(","))
            if trained == feat.RR_FEATURES[: len(trained)]:
                n_rr = len(trained)
                expected["rr_features"] = meta["rr_features"]
        for key, value in expected.items():
            if key in meta and meta[key] != value:
                raise ConfigError(
                    f"{path}: trained with {key}={meta[key]!r} but the feature code has {value!r}; "
                    "retrain it with `ecgmon train`"
                )
        return n_rr

    @property
    def name(self) -> str:
        return self._name

    @property
    def labels(self) -> tuple[BeatClass, ...]:
        return self._labels

    @property
    def n_leads(self) -> int:
        return self._n_leads

    def classify(self, batch: BeatFeatures) -> Classification:
        if len(batch) == 0:
            return Classification(
                self._labels, np.zeros(0, np.int64), np.zeros((0, len(self._labels)), np.float32)
            )
        outputs = self._session.run(
            ["probabilities"],
            {
                "beat": np.ascontiguousarray(batch.beats, np.float32),
                "rr": np.ascontiguousarray(batch.rr[:, : self._n_rr], np.float32),
            },
        )
        probs = np.asarray(outputs[0], dtype=np.float32)
        return Classification(self._labels, probs.argmax(axis=1).astype(np.int64), probs)
