"""MLflow model registry: log CAJNN as a pyfunc, register a version, champion/challenger.

Aliases, not stages (stages are deprecated in MLflow 3): every new version gets `challenger`;
it becomes `champion` per :func:`decide_promotion`. The champion is scored again on the same
frozen evaluation sets as the challenger (its weights downloaded from the registry), so a change
of the sets, of the protocol or of a stale tag cannot decide a promotion.

The policy (also in the version tag `promotion_policy` and in reports/registry.json):

* no champion yet -> the new version becomes champion;
* otherwise, over the set/QF keys both models were scored on, the challenger must have a mean
  PSNR-Y higher than the champion's by more than `min_gain` dB, and no key may be worse than the
  champion's by more than `tolerance` dB; a tie keeps the champion.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from cajnn.config import EvaluateConfig, RegisterConfig

CHAMPION = "champion"
CHALLENGER = "challenger"
PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]
LOCK_FILE = PACKAGE_DIR.parent / "requirements.lock"
PSNR_KEY = re.compile(r"^(?P<set>[^/]+)/qf(?P<qf>\d+)/cajnn/psnr_y$")
POLICY_RULE = (
    "first model -> champion; else over common set/QF keys: mean PSNR-Y gain > min_gain dB and "
    "no key worse by more than tolerance dB; ties keep the champion"
)
# What the served model imports (the distributions behind `import torch, numpy, PIL, ...`).
SERVING_PACKAGES = ["torch", "numpy", "pillow", "pandas", "safetensors", "mlflow"]


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


# --------------------------------------------------------------------------- scores

def psnr_from_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """`reports/metrics.json` -> `{"<set>/qf<Q>": CAJNN PSNR-Y}` (no self-ensemble)."""
    return {f"{m['set']}/qf{m['qf']}": float(v) for k, v in metrics.items() if (m := PSNR_KEY.match(k))}


def score_weights(weights: Path, eval_cfg: EvaluateConfig, root: Path) -> dict[str, float]:
    """PSNR-Y of the model in `weights` on every evaluation set present and every QF of
    `eval_cfg`, by the paper protocol (`run_protocol`), exactly as the evaluate stage scores its
    `cajnn` rows: same sets, QFs, border, tiling; no self-ensemble, no QF sweep."""
    from cajnn.evaluation import flat_metrics, run_protocol
    from cajnn.weights import load_weights

    cfg = replace(eval_cfg, self_ensemble=False, sweep_set="")
    protocol = run_protocol(load_weights(weights), cfg, root)
    return psnr_from_metrics(flat_metrics(protocol.report))


def sets_fingerprint(eval_cfg: EvaluateConfig, root: Path) -> dict:
    """Which frozen sets a comparison used: image count and content hash of each present set."""
    from cajnn.data.image_io import list_images

    out: dict = {"qualities": list(eval_cfg.qualities), "sets": {}}
    for name, folder in sorted(eval_cfg.sets.items()):
        path = root / folder
        if not path.is_dir():
            out["sets"][name] = "missing"
            continue
        digest = hashlib.sha256()
        files = list_images(path)
        for f in files:
            digest.update(f.relative_to(path).as_posix().encode() + b"\0")
            with f.open("rb") as fh:
                digest.update(hashlib.file_digest(fh, "sha256").digest())
        out["sets"][name] = {"images": len(files), "sha256": digest.hexdigest()[:16]}
    return out


# --------------------------------------------------------------------------- logging the model

def _example_input():
    import pandas as pd

    from cajnn.serving.pyfunc_model import encode_png

    return pd.DataFrame({"image": [encode_png(np.full((8, 8, 3), 128, np.uint8))]})


def requirements() -> list[str]:
    """Pinned requirements of the served model: our lock file's versions (the installed ones
    when there is no lock file beside the package)."""
    from importlib.metadata import version

    pinned: dict[str, str] = {}
    if LOCK_FILE.is_file():
        for line in LOCK_FILE.read_text().splitlines():
            name, sep, ver = line.strip().partition("==")
            if sep:
                pinned[name.lower().replace("_", "-")] = ver.split("+")[0]
    return [f"{n}=={pinned.get(n) or version(n).split('+')[0]}" for n in SERVING_PACKAGES]


def signature():
    from mlflow.models.signature import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import AnyType

    # `image` is Any: base64 PNG/JPEG strings (serving requests), encoded bytes or uint8 arrays
    # (in Python); pyfunc_model.decode_image checks each value.
    return ModelSignature(
        inputs=Schema([ColSpec(AnyType(), "image")]),
        outputs=Schema([ColSpec(AnyType(), "image"), ColSpec("long", "width"), ColSpec("long", "height")]),
        params=ParamSchema([
            ParamSpec("tile", "long", 0),
            ParamSpec("self_ensemble", "boolean", False),
            ParamSpec("output", "string", "auto"),
        ]),
    )


def log_pyfunc(weights: Path, run_id: str) -> str:
    """Log the model (safetensors + JSON config as artifacts, our package as code) to `run_id`;
    returns its model URI."""
    import mlflow

    weights = Path(weights)
    with tempfile.TemporaryDirectory(prefix="cajnn-code-") as tmp:
        # Only the package's sources travel with the model (no caches).
        code = Path(tmp) / "cajnn"
        shutil.copytree(PACKAGE_DIR, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(PYFUNC_FILE),
                artifacts={"weights": str(weights), "config": str(weights.with_suffix(".json"))},
                code_paths=[str(code)],
                signature=signature(),
                input_example=_example_input(),
                pip_requirements=requirements(),
            )
    return info.model_uri


# --------------------------------------------------------------------------- the registry

def champion_version(name: str, client=None):
    """The ModelVersion the `champion` alias points at, or None."""
    from mlflow.exceptions import MlflowException

    from mlflow import MlflowClient

    client = client or MlflowClient()
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def download_weights(model_uri: str, dst: Path) -> Path:
    """The safetensors weights (and their JSON config beside them) of a CAJNN pyfunc model,
    downloaded into `dst`; returns the weights path."""
    import yaml

    import mlflow

    dst.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cajnn-dl-", dir=dst) as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        meta = yaml.safe_load((local / "MLmodel").read_text()) or {}
        arts = (meta.get("flavors", {}).get("python_function", {}) or {}).get("artifacts") or {}
        if "weights" not in arts:
            raise ValueError(f"{model_uri} is not a cajnn model (no 'weights' artifact in its MLmodel)")
        weights = dst / "cajnn.safetensors"
        shutil.copyfile(local / arts["weights"]["path"], weights)
        config = arts.get("config", {}).get("path")
        if config:
            shutil.copyfile(local / config, weights.with_suffix(".json"))
    return weights


def _tags(d: dict) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in d.items()}


def register(
    model_uri: str,
    run_id: str,
    metrics: dict[str, float],
    cfg: RegisterConfig,
    scorer: Callable[[Path], dict[str, float]] | None = None,
    extra: dict | None = None,
) -> dict:
    """Register `model_uri` as a new version of `cfg.model_name`, tag it, set `challenger`,
    promote it to `champion` per the policy. `metrics` are the challenger's PSNR-Y per
    `<set>/qf<Q>`; `scorer(weights_path)` scores the current champion on the same frozen sets
    (when None, or with `rescore_champion: false`, the champion's recorded tag is used).
    Returns the record written to reports/registry.json."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    name = cfg.model_name
    champ = champion_version(name, client)
    champ_metrics: dict[str, float] | None = None
    source = "none"
    if champ is not None:
        recorded = json.loads(champ.tags.get("eval_psnr_y") or "{}")
        champ_metrics, source = recorded, "recorded tag eval_psnr_y"
        if scorer is not None and cfg.rescore_champion:
            with tempfile.TemporaryDirectory(prefix="cajnn-champion-") as tmp:
                try:
                    weights = download_weights(f"models:/{name}/{champ.version}", Path(tmp))
                    champ_metrics = scorer(weights)
                    source = "rescored on the frozen evaluation sets"
                except Exception as exc:  # keep the policy safe: fall back to the tag, say so
                    source = f"recorded tag eval_psnr_y (rescoring failed: {type(exc).__name__}: {exc})"

    decision = decide_promotion(metrics, champ_metrics, cfg)
    mv = mlflow.register_model(model_uri, name)
    if decision.promote and champ is not None:
        now = champion_version(name, client)
        if now is None or now.version != champ.version:
            decision = Decision(False, f"champion changed to version {now.version if now else 'none'} while "
                                f"comparing with version {champ.version}; not promoted (register again)",
                                decision.challenger_mean, decision.champion_mean, decision.worst_drop)
    champion = mv.version if decision.promote else (champ.version if champ is not None else None)
    policy = {"min_gain": cfg.min_gain, "tolerance": cfg.tolerance, "rule": POLICY_RULE}
    tags = {
        "eval_psnr_y": metrics,
        "champion_psnr_y": champ_metrics if champ_metrics is not None else {},
        "champion_psnr_y_source": source,
        "compared_with": str(champ.version) if champ is not None else "none",
        "promotion": "promoted" if decision.promote else "kept champion",
        "promotion_reason": decision.reason,
        "challenger_mean_psnr_y": f"{decision.challenger_mean:.4f}",
        "champion_mean_psnr_y": "" if decision.champion_mean is None else f"{decision.champion_mean:.4f}",
        "worst_drop_db": "" if decision.worst_drop is None else f"{decision.worst_drop:.4f}",
        "promotion_policy": policy,
        **(extra or {}),
    }
    for key, value in _tags(tags).items():
        client.set_model_version_tag(name, mv.version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, mv.version)
    client.set_tag(run_id, "registry.version", f"{name}/{mv.version}")
    client.set_tag(run_id, "registry.promotion", tags["promotion"])
    return {
        "model_name": name,
        "version": int(mv.version),
        "run_id": run_id,
        "model_uri": model_uri,
        "previous_champion": int(champ.version) if champ is not None else None,
        "champion": int(champion) if champion is not None else None,
        "decision": asdict(decision),
        "policy": policy,
        "challenger_psnr_y": metrics,
        "champion_psnr_y": champ_metrics,
        "champion_psnr_y_source": source,
        **({"extra": extra} if extra else {}),
    }
