"""MLflow model registry: log CAJNN as a pyfunc, register a version, champion/challenger.

Aliases, not stages (stages are deprecated in MLflow 3): every new version gets `challenger`;
it becomes `champion` per :func:`decide_promotion`.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cajnn.config import RegisterConfig

CHAMPION = "champion"
CHALLENGER = "challenger"
PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    challenger_mean: float
    champion_mean: float | None
    worst_drop: float | None


def decide_promotion(
    challenger: dict[str, float], champion: dict[str, float] | None, cfg: RegisterConfig
) -> Decision:
    """Policy: promote when there is no champion, or when the challenger's mean PSNR-Y over
    the common set/QF keys is higher by more than `min_gain` and no key is worse by more than
    `tolerance` dB. Ties keep the champion."""
    if not challenger:
        raise ValueError("challenger has no evaluation metrics")
    c_mean = float(np.mean(list(challenger.values())))
    if champion is None:
        return Decision(True, "first model: no champion yet", c_mean, None, None)
    common = sorted(set(challenger) & set(champion))
    if not common:
        return Decision(False, "no metrics in common with the champion: keep champion", c_mean, None, None)
    c_mean = float(np.mean([challenger[k] for k in common]))
    k_mean = float(np.mean([champion[k] for k in common]))
    drops = {k: champion[k] - challenger[k] for k in common}
    worst_key = max(drops, key=drops.get)
    worst = drops[worst_key]
    if worst > cfg.tolerance:
        return Decision(False, f"{worst_key} is {worst:.3f} dB worse (tolerance {cfg.tolerance})", c_mean, k_mean, worst)
    if c_mean - k_mean > cfg.min_gain:
        return Decision(True, f"mean PSNR-Y {c_mean:.3f} > champion {k_mean:.3f} dB", c_mean, k_mean, worst)
    return Decision(False, f"mean PSNR-Y {c_mean:.3f} does not beat champion {k_mean:.3f} dB", c_mean, k_mean, worst)


def _example_input():
    import pandas as pd
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(buf, format="PNG")
    return pd.DataFrame({"image": [base64.b64encode(buf.getvalue()).decode("ascii")]})


def requirements() -> list[str]:
    """Pinned requirements of the served model: the same versions as our lock file."""
    from importlib.metadata import version

    names = ["torch", "numpy", "pillow", "safetensors", "pandas", "mlflow"]
    return [f"{n}=={version(n).split('+')[0]}" for n in names]


def log_pyfunc(weights: Path, run_id: str) -> str:
    """Log the model (safetensors + JSON config as artifacts) to `run_id`; returns its URI."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    import mlflow

    config = weights.with_suffix(".json")
    example = _example_input()
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "image")]),
        outputs=Schema([ColSpec("string", "image"), ColSpec("long", "width"), ColSpec("long", "height")]),
        params=ParamSchema([ParamSpec("tile", "long", 0), ParamSpec("self_ensemble", "boolean", False)]),
    )
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_FILE),
            artifacts={"weights": str(weights), "config": str(config)},
            code_paths=[str(PACKAGE_DIR)],
            signature=signature,
            input_example=example,
            pip_requirements=requirements(),
        )
    return info.model_uri


def champion_metrics(name: str) -> tuple[str | None, dict[str, float] | None]:
    """The champion's version and its recorded evaluation metrics, if there is one."""
    from mlflow.exceptions import MlflowException

    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None, None
    raw = mv.tags.get("eval_psnr_y")
    return mv.version, json.loads(raw) if raw else {}


def register(
    model_uri: str, run_id: str, metrics: dict[str, float], cfg: RegisterConfig
) -> dict:
    """Register a new version, tag it, set `challenger`, promote to `champion` per the policy."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    champ_version, champ_metrics = champion_metrics(cfg.model_name)
    mv = mlflow.register_model(model_uri, cfg.model_name)
    decision = decide_promotion(metrics, champ_metrics, cfg)
    client.set_model_version_tag(cfg.model_name, mv.version, "eval_psnr_y", json.dumps(metrics, sort_keys=True))
    client.set_model_version_tag(cfg.model_name, mv.version, "promotion", "promoted" if decision.promote else "kept champion")
    client.set_model_version_tag(cfg.model_name, mv.version, "promotion_reason", decision.reason)
    client.set_model_version_tag(cfg.model_name, mv.version, "compared_with", str(champ_version or "none"))
    client.set_registered_model_alias(cfg.model_name, CHALLENGER, mv.version)
    if decision.promote:
        client.set_registered_model_alias(cfg.model_name, CHAMPION, mv.version)
    return {
        "model_name": cfg.model_name,
        "version": int(mv.version),
        "run_id": run_id,
        "model_uri": model_uri,
        "previous_champion": int(champ_version) if champ_version else None,
        "champion": int(mv.version) if decision.promote else (int(champ_version) if champ_version else None),
        "decision": asdict(decision),
    }
