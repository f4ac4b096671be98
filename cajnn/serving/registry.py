"""MLflow model registry: log CAJNN as a pyfunc, register a version, champion/challenger.

Aliases, not stages (stages are deprecated in MLflow 3): every new version gets `challenger`;
it becomes `champion` per :func:`decide_promotion`. The champion is scored again on the same
frozen evaluation sets as the challenger (its weights downloaded from the registry), so a change
of the sets, of the protocol or of stale recorded numbers cannot decide a promotion.

Each version explains itself in the UI: its description is a model card (architecture, training
data, training, the evaluation table, the promotion decision) and its evaluation metrics are
metrics of its logged model, which MLflow's model pages compare across versions.

The policy (also in each version's description and in reports/registry.json):

* no champion yet -> the new version becomes champion;
* otherwise, over the set/QF keys both models were scored on, the challenger must have a mean
  PSNR-Y higher than the champion's by more than `min_gain` dB, and no key may be worse than the
  champion's by more than `tolerance` dB; a tie keeps the champion.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from cajnn.config import EvaluateConfig, RegisterConfig
from cajnn.metrics.keys import QUALITY_METRICS, TEXT, MetricKey, model_metric_name, parse_point
from cajnn.serving.mlmodel import CONFIG_ARTIFACT, WEIGHTS_ARTIFACT, cajnn_artifacts
from cajnn.tracking import DIGEST_CHARS, dataset, files_digest

CHAMPION = "champion"
CHALLENGER = "challenger"
PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]
LOCK_FILE = PACKAGE_DIR.parent / "requirements.lock"
ACC = "word_acc"  # the downstream text metric the gate compares
COMPARED = ("cajnn", "psnr_y")  # (method, metric) the promotion policy compares: no self-ensemble
MODEL_METHODS = ("cajnn", "cajnn_x8")  # the model's own rows of reports/metrics.json (not bicubic's)
DESCRIPTION_LIMIT = 5000  # characters of a model version description in MLflow's SQL store
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


def decide_promotion(challenger: dict[str, float], champion: dict[str, float] | None, cfg: RegisterConfig) -> Decision:
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
        return Decision(
            False, f"{worst_key} is {worst:.3f} dB worse (tolerance {cfg.tolerance})", c_mean, k_mean, worst
        )
    if c_mean - k_mean > cfg.min_gain:
        return Decision(True, f"mean PSNR-Y {c_mean:.3f} > champion {k_mean:.3f} dB", c_mean, k_mean, worst)
    return Decision(False, f"mean PSNR-Y {c_mean:.3f} does not beat champion {k_mean:.3f} dB", c_mean, k_mean, worst)


def downstream_gate(downstream: dict[str, float], max_drop: float | None) -> str | None:
    """Why a model may not be promoted on account of text recognition, or None. The gate
    compares, per QF of the downstream stage, the word accuracy of CAJNN's output with that of
    the LR input it was given (paper Table II's "Ours + Baseline" vs "Baseline")."""
    if max_drop is None:
        return None
    keys = [m for k in downstream if (m := MetricKey.parse(k)) and (m.set, m.method, m.metric) == (TEXT, "cajnn", ACC)]
    if not keys:
        raise ValueError("the downstream metrics have no text/qf*/cajnn/word_acc: run the downstream stage")
    drops = {
        f"qf{k.qf}": downstream[replace(k, method="lr").format()] - downstream[k.format()]
        for k in sorted(keys, key=lambda k: k.qf)
    }
    worst = max(drops, key=drops.get)
    if drops[worst] > max_drop:
        return (
            f"downstream gate: CAJNN lowers word accuracy at {worst.upper()} by {drops[worst]:.1f} points "
            f"(more than register.max_word_acc_drop {max_drop})"
        )
    return None


# --------------------------------------------------------------------------- scores


def psnr_from_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """`reports/metrics.json` -> `{"<set>/qf<Q>": CAJNN PSNR-Y}` (no self-ensemble)."""
    return {m.point: float(v) for k, v in metrics.items() if (m := MetricKey.parse(k)) and _compared(m)}


def _compared(key: MetricKey) -> bool:
    return (key.method, key.metric) == COMPARED


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
        files = list_images(path)
        out["sets"][name] = {"images": len(files), "sha256": files_digest(path, files)[:DIGEST_CHARS]}
    return out


def eval_set_datasets(eval_cfg: EvaluateConfig, root: Path, fingerprint: dict) -> list:
    """The present evaluation sets as MLflow datasets (digests of :func:`sets_fingerprint`)."""
    qualities = ", ".join(map(str, fingerprint.get("qualities", [])))
    present = {n: i for n, i in sorted(fingerprint.get("sets", {}).items()) if isinstance(i, dict)}  # not "missing"
    return [
        dataset(n, root / eval_cfg.sets[n], i["sha256"], {"images": i["images"], "qualities": qualities})
        for n, i in present.items()
    ]


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
        params=ParamSchema(
            [
                ParamSpec("tile", "long", 0),
                ParamSpec("self_ensemble", "boolean", False),
                ParamSpec("output", "string", "auto"),
            ]
        ),
    )


def log_pyfunc(weights: Path, run_id: str, step: int = 0) -> str:
    """Log the model (safetensors + JSON config as artifacts, our package as code) to `run_id`
    as produced at training step `step` (MLflow copies the run's metrics of that step to it);
    returns its model URI."""
    import mlflow

    weights = Path(weights)
    with tempfile.TemporaryDirectory(prefix="cajnn-code-") as tmp:
        # Only the package's sources travel with the model (no caches).
        code = Path(tmp) / "cajnn"
        # (the shipped models' weights stay out: the model's own weights are its artifacts)
        shutil.copytree(PACKAGE_DIR, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.safetensors"))
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(PYFUNC_FILE),
                artifacts={WEIGHTS_ARTIFACT: str(weights), CONFIG_ARTIFACT: str(weights.with_suffix(".json"))},
                code_paths=[str(code)],
                signature=signature(),
                input_example=_example_input(),
                pip_requirements=requirements(),
                step=step,
            )
    return info.model_uri


# --------------------------------------------------------------------------- the registry


def champion_version(name: str, client=None):
    """The ModelVersion the `champion` alias points at, or None."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

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
    import mlflow

    dst.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cajnn-dl-", dir=dst) as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        arts = cajnn_artifacts(str(local), name=model_uri)
        weights = dst / "cajnn.safetensors"
        shutil.copyfile(local / arts.weights, weights)
        if arts.config:
            shutil.copyfile(local / arts.config, weights.with_suffix(".json"))
    return weights


def _tags(d: dict) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in d.items()}


# --------------------------------------------------------------------------- what a version says about itself


def model_metrics_from(metrics: dict[str, float]) -> dict[str, float]:
    """The model's own rows of `reports/metrics.json` (CAJNN, with and without self-ensemble)."""
    return {k: float(v) for k, v in metrics.items() if (m := _score(k)) and m.method in MODEL_METHODS}


def _score(key: str) -> MetricKey | None:
    """The PSNR-Y / SSIM-Y score a metrics.json key names (None for the other keys)."""
    m = MetricKey.parse(key)
    return m if m is not None and m.metric in QUALITY_METRICS else None


def _key_order(key: str) -> tuple:
    """Sort order of `<set>/qf<Q>` keys: by set, then QF as a number."""
    point = parse_point(key)
    return point if point is not None else (key.partition("/qf")[0], 0)


def logged_model_id(uri_or_version) -> str | None:
    """The logged model (MLflow 3) behind a model URI or a registered version, whose `model_id`
    the client leaves empty: a version's source is the URI `models:/<model_id>`."""
    if getattr(uri_or_version, "model_id", None):
        return uri_or_version.model_id
    uri = str(getattr(uri_or_version, "source", uri_or_version) or "")
    m = re.fullmatch(r"models:/(m-[0-9a-f]+)", uri)
    return m[1] if m else None


def recorded_psnr_y(client, mv) -> dict[str, float] | None:
    """The PSNR-Y a version was registered with, `{"<set>/qf<Q>": dB}`: its logged model's
    metrics (the latest value of each), or the JSON tag `eval_psnr_y` of versions registered
    before those; None when it has neither."""
    found: dict[str, tuple[int, float]] = {}
    if model_id := logged_model_id(mv):
        for m in client.get_logged_model(model_id).metrics or []:
            if (k := MetricKey.parse_model(m.key)) and _compared(k) and m.timestamp >= found.get(k.point, (-1, 0))[0]:
                found[k.point] = (m.timestamp, float(m.value))
    if found:
        return {k: v for k, (_, v) in sorted(found.items(), key=lambda kv: _key_order(kv[0]))}
    legacy = mv.tags.get("eval_psnr_y")
    return {k: float(v) for k, v in json.loads(legacy).items()} if legacy else None


def log_model_metrics(
    client, run_id: str, model_id: str, metrics: dict[str, float], eval_sets: dict | None = None
) -> None:
    """Attach `metrics` (metrics.json keys) to the logged model (and its run, where they are
    the evaluate stage's already), each linked to its evaluation set's dataset when known."""
    from mlflow.entities import Metric

    digests = {n: i["sha256"] for n, i in ((eval_sets or {}).get("sets") or {}).items() if isinstance(i, dict)}
    now = int(time.time() * 1000)
    batch = []
    for key, value in sorted(metrics.items()):
        name = key.split("/")[0]
        linked = {"dataset_name": name, "dataset_digest": digests[name]} if name in digests and "/" in key else {}
        batch.append(Metric(model_metric_name(key), float(value), now, 0, model_id=model_id, **linked))
    for i in range(0, len(batch), 500):
        client.log_batch(run_id, metrics=batch[i : i + 500])


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def eval_table(metrics: dict[str, float]) -> str:
    """reports/metrics.json as a Markdown table: PSNR-Y / SSIM-Y per set, QF and method."""
    from cajnn.evaluation import METHOD_LABELS

    cells: dict[tuple[str, int], dict[str, dict[str, float]]] = {}
    methods: list[str] = []
    for key, value in metrics.items():
        if m := _score(key):
            cells.setdefault((m.set, m.qf), {}).setdefault(m.method, {})[m.metric] = float(value)
            if m.method not in methods:
                methods.append(m.method)
    if not cells:
        return ""
    methods.sort(key=lambda k: list(METHOD_LABELS).index(k) if k in METHOD_LABELS else len(METHOD_LABELS))
    lines = [
        "| Set | QF | " + " | ".join(METHOD_LABELS.get(k, k) for k in methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for (name, qf), row in sorted(cells.items()):
        vals = []
        for k in methods:
            c = row.get(k, {})
            vals.append(_fmt(c.get("psnr_y")) + (f" / {c['ssim_y']:.4f}" if "ssim_y" in c else ""))
        lines.append(f"| {name} | {qf} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def model_card(model_config: dict, training: dict, metrics: dict[str, float]) -> str:
    """The Markdown body of a version's description: architecture, training data, training and
    evaluation. `training` is the train stage's models/run.json plus the run's `run_id`,
    `run_name`, `commit`, `dirty` and `dvc_exp` (any may be missing); `metrics` is reports/metrics.json."""
    t = training
    parts = ["## Architecture"]
    arch = ", ".join(f"{k} {v}" for k, v in sorted(model_config.items()) if k != "scale")
    preset = f" (model preset `{t['model_preset']}`)" if t.get("model_preset") else ""
    n = t.get("params")
    parts.append(
        f"CAJNN{preset}, x{model_config.get('scale', '?')} super-resolution of JPEG-compressed images: {arch}."
        + (f" {n:,} parameters ({n / 1e6:.2f} M)." if isinstance(n, int) else "")
    )
    data = t.get("data") or {}
    if data:
        sources = ", ".join(f"{k} ({v} images)" for k, v in (data.get("sources") or {}).items())
        patches = f"{data['patches']:,}" if isinstance(data.get("patches"), int) else "?"
        parts += [
            "## Training data",
            (
                f"Patch set `{data.get('path', '?')}` (MLflow dataset `patches`, manifest sha256 "
                f"`{str(data.get('manifest_sha256', '?'))[:DIGEST_CHARS]}`): {patches} LR/HR patch pairs"
                + (f" ({data['patch_size_lr']} px LR)" if data.get("patch_size_lr") else "")
                + f" from {data.get('images', '?')} images"
                + (f" of {sources}" if sources else "")
                + (f", degradation profile `{data['profile']}`" if data.get("profile") else "")
                + (
                    f", {data['qualities_per_image']} JPEG qualities per image"
                    if data.get("qualities_per_image")
                    else ""
                )
                + "."
            ),
        ]
    it = t.get("iterations")
    if it is not None or t.get("run_id"):
        line = f"{it:,} iterations" if isinstance(it, int) else "Trained"
        if t.get("batch_size"):
            line += f" of batch {t['batch_size']}" + (f" x {t['crop']} px LR crops" if t.get("crop") else "")
        if t.get("preset"):
            line += f", preset `{t['preset']}`"
        line += "."
        if t.get("val_psnr_y") is not None:
            line += f" Validation PSNR-Y at the end: {t['val_psnr_y']:.2f} dB."
        run = t.get("run_name") or t.get("run_id")
        if run:
            line += f" MLflow run `{run}`" + (f" ({t['run_id']})" if t.get("run_id") and run != t["run_id"] else "")
            line += f", DVC experiment `{t['dvc_exp']}`" if t.get("dvc_exp") else ""
            if t.get("commit"):
                line += f", commit `{t['commit'][:12]}`"
                line += " with uncommitted changes" if t.get("dirty") == "true" else ""
            line += "."
        parts += ["## Training", line]
    table = eval_table(metrics)
    if table:
        parts += ["## Evaluation", "PSNR-Y (dB) / SSIM-Y on the frozen evaluation sets (reports/metrics.json):", table]
    return "\n\n".join(parts)


def version_description(
    name: str,
    version: str,
    decision: Decision,
    card: str,
    champ,
    champ_metrics,
    source: str,
    metrics: dict[str, float],
    cfg: RegisterConfig,
) -> str:
    """Title and verdict, the model card, then the promotion section, within MLflow's limit
    (the card's evaluation table is what gets cut)."""
    if decision.promote:
        verdict = f"**Champion** (promoted: {decision.reason})."
    else:
        verdict = f"**Challenger**, not promoted ({decision.reason}); champion: version {champ.version}."
    head = f"# {name} version {version}\n\n{verdict}\n\n"
    promo = [
        "## Promotion",
        f"Policy: {POLICY_RULE} (min_gain {cfg.min_gain} dB, tolerance {cfg.tolerance} dB). "
        + (
            f"Compared with version {champ.version}, whose numbers were {source}."
            if champ is not None
            else "No champion before this version."
        ),
    ]
    if champ_metrics is not None and champ is not None:
        rows = [f"| Set / QF | This version PSNR-Y (dB) | Version {champ.version} | Difference |", "|---|---|---|---|"]
        for key in sorted(set(metrics) | set(champ_metrics), key=_key_order):
            a, b = metrics.get(key), champ_metrics.get(key)
            diff = f"{a - b:+.3f}" if a is not None and b is not None else "-"
            rows.append(f"| {key} | {_fmt(a, 3)} | {_fmt(b, 3)} | {diff} |")
        promo.append("\n".join(rows))
    tail = "\n\n" + "\n\n".join(promo)
    room = DESCRIPTION_LIMIT - len(head) - len(tail)
    if len(card) > room:
        note = "\n\n(cut to MLflow's description limit: the full table is reports/table.md in the run's artifacts)"
        card = card[: max(0, room - len(note))].rsplit("\n", 1)[0] + note
    return (head + card + tail)[:DESCRIPTION_LIMIT]


def _sets_tag(eval_sets: dict) -> str:
    return "; ".join(
        f"{n}: " + (f"{i['images']} images, sha256 {i['sha256']}" if isinstance(i, dict) else str(i))
        for n, i in sorted(eval_sets.get("sets", {}).items())
    )


# --------------------------------------------------------------------------- registering


def seed_champion(
    shipped_name: str, cfg: RegisterConfig, scorer: Callable[[Path], dict[str, float]], eval_sets: dict | None = None
) -> dict | None:
    """When `cfg.model_name` has no champion, register the shipped model `shipped_name` as its
    first version (an MLflow run `shipped-<name>` holds it) scored by `scorer` on the frozen sets;
    being first, it becomes champion. Returns its registration record, or None when a champion
    exists already."""
    import mlflow

    from cajnn import shipped

    if champion_version(cfg.model_name) is not None:
        return None
    weights = shipped.weights_path(shipped_name)
    card = shipped.card(shipped_name)
    metrics = scorer(weights)
    with mlflow.start_run(
        run_name=f"shipped-{shipped_name}",
        tags={
            "source": "shipped model",
            "shipped_model": shipped_name,
            "preset": str(card.get("preset", "")),
            "trained_in_run": str((card.get("mlflow_run") or {}).get("run_id", "")),
            "weights_sha256": str(card.get("weights_sha256", "")),
        },
    ) as run:
        mlflow.log_params(
            {
                "shipped_model": shipped_name,
                "model.preset": (card.get("model") or {}).get("preset"),
                "iterations": (card.get("training") or {}).get("iterations"),
            }
        )
    uri = log_pyfunc(weights, run.info.run_id)
    text = (weights.parent / shipped.CARD_MD).read_text()
    return register(
        uri,
        run.info.run_id,
        metrics,
        cfg,
        card=text.split("\n", 1)[1].strip(),
        extra={"shipped_model": shipped_name},
        eval_sets=eval_sets,
    )


def register(
    model_uri: str,
    run_id: str,
    metrics: dict[str, float],
    cfg: RegisterConfig,
    scorer: Callable[[Path], dict[str, float]] | None = None,
    extra: dict | None = None,
    *,
    card: str = "",
    model_metrics: dict[str, float] | None = None,
    eval_sets: dict | None = None,
    gate: str | None = None,
) -> dict:
    """Register `model_uri` as a new version of `cfg.model_name`, set `challenger`, promote it
    to `champion` per the policy, and describe it. `metrics` are the challenger's PSNR-Y per
    `<set>/qf<Q>`; `scorer(weights_path)` scores the current champion on the same frozen sets
    (when None, or with `rescore_champion: false`, the champion's recorded numbers are used).
    `card` (:func:`model_card`) heads the version's description; `metrics` and `model_metrics`
    (reports/metrics.json keys) become metrics of the logged model, linked to the datasets of
    `eval_sets` (:func:`sets_fingerprint`); `extra` are more version tags; `gate` (a reason, from
    :func:`downstream_gate`) keeps the version from being promoted whatever its PSNR-Y.
    Returns the record written to reports/registry.json."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    name = cfg.model_name
    champ = champion_version(name, client)
    champ_metrics: dict[str, float] | None = None
    source = "none"
    if champ is not None:
        champ_metrics, source = recorded_psnr_y(client, champ) or {}, "recorded at its registration"
        if scorer is not None and cfg.rescore_champion:
            with tempfile.TemporaryDirectory(prefix="cajnn-champion-") as tmp:
                try:
                    weights = download_weights(f"models:/{name}/{champ.version}", Path(tmp))
                    champ_metrics = scorer(weights)
                    source = "rescored on the frozen evaluation sets"
                except Exception as exc:  # keep the policy safe: fall back to the recorded numbers, say so
                    source = f"recorded at its registration (rescoring failed: {type(exc).__name__}: {exc})"

    decision = decide_promotion(metrics, champ_metrics, cfg)
    if gate and decision.promote:
        decision = Decision(False, gate, decision.challenger_mean, decision.champion_mean, decision.worst_drop)
    mv = mlflow.register_model(model_uri, name)
    if decision.promote and champ is not None:
        now = champion_version(name, client)
        if now is None or now.version != champ.version:
            decision = Decision(
                False,
                f"champion changed to version {now.version if now else 'none'} while "
                f"comparing with version {champ.version}; not promoted (register again)",
                decision.challenger_mean,
                decision.champion_mean,
                decision.worst_drop,
            )
    champion = mv.version if decision.promote else (champ.version if champ is not None else None)
    policy = {"min_gain": cfg.min_gain, "tolerance": cfg.tolerance, "rule": POLICY_RULE}
    model_id = logged_model_id(mv) or logged_model_id(model_uri)
    if model_id:  # a model logged by MLflow 3 (not a `runs:/` URI of an older one)
        psnr_rows = {MetricKey(*parse_point(k), *COMPARED).format(): v for k, v in metrics.items()}
        log_model_metrics(client, run_id, model_id, {**psnr_rows, **(model_metrics or {})}, eval_sets)
    # Readable values only: the numbers per set and QF are the logged model's metrics and the
    # description's tables, not JSON in a tag.
    tags = {
        "promotion": "promoted" if decision.promote else "kept champion",
        "promotion_reason": decision.reason,
        "compared_with": str(champ.version) if champ is not None else "none",
        "champion_psnr_y_source": source,
        "challenger_mean_psnr_y": f"{decision.challenger_mean:.4f}",
        "champion_mean_psnr_y": "" if decision.champion_mean is None else f"{decision.champion_mean:.4f}",
        "worst_drop_db": "" if decision.worst_drop is None else f"{decision.worst_drop:.4f}",
        "promotion_policy": f"min_gain {cfg.min_gain} dB, tolerance {cfg.tolerance} dB",
        **(
            {"eval_sets": _sets_tag(eval_sets), "eval_qualities": ", ".join(map(str, eval_sets.get("qualities", [])))}
            if eval_sets
            else {}
        ),
        **(extra or {}),
    }
    for key, value in _tags(tags).items():
        client.set_model_version_tag(name, mv.version, key, value)
    description = version_description(name, mv.version, decision, card, champ, champ_metrics, source, metrics, cfg)
    client.update_model_version(name, mv.version, description=description)
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
        "model_id": model_id,
        "previous_champion": int(champ.version) if champ is not None else None,
        "champion": int(champion) if champion is not None else None,
        "decision": asdict(decision),
        "policy": policy,
        "challenger_psnr_y": metrics,
        "champion_psnr_y": champ_metrics,
        "champion_psnr_y_source": source,
        **({"eval_sets": eval_sets} if eval_sets else {}),
        **({"extra": extra} if extra else {}),
    }
