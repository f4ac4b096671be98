"""Export a finished pipeline run as a shipped model (``cajnn/shipped/<name>/``).

Reads what the stages wrote in a checkout: the exported weights (``evaluate.weights``), the train
stage's ``run.json``, the evaluate stage's ``metrics.json``, the composed
``params.yaml`` and the data manifests, and writes the weights, ``card.json`` and
``MODEL_CARD.md`` into the package, swapped in whole (a failure leaves the old folder as it was).

    python -m cajnn.shipped.export --name cpu-base      # after `dvc exp run -S preset=cpu-base`
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from cajnn.atomic import atomic_dir, write_json_atomic, write_text_atomic
from cajnn.config import load_params
from cajnn.config.base import to_dict
from cajnn.metrics.keys import MetricKey, parse_point
from cajnn.shipped import CARD_FILE, CARD_MD, HERE, MAX_BYTES, WEIGHTS_FILE
from cajnn.tracking import RUN_FILE
from cajnn.weights import config_path_for

RETRAIN = "make shipped-model"  # = dvc exp run -S preset=<preset> -n <preset>, then this export


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git_commit(root: Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def gains(metrics: dict[str, float], method: str = "cajnn") -> dict[str, float]:
    """`<set>/qf<Q>` -> PSNR-Y gain (dB) of `method` over bicubic (reports/metrics.json keys)."""
    out = {}
    for key, value in metrics.items():
        if (m := MetricKey.parse(key)) and (m.method, m.metric) == (method, "psnr_y"):
            base = metrics.get(MetricKey(m.set, m.qf, "bicubic", "psnr_y").format())
            if base is not None:
                out[m.point] = round(float(value) - float(base), 4)
    return dict(sorted(out.items(), key=lambda kv: parse_point(kv[0])))


def _data_sources(root: Path, inputs: list[str]) -> list[dict]:
    """Each training image folder: its manifest's hash, image count, origin and licence."""
    out = []
    for folder in inputs:
        manifest = root / folder / "manifest.json"
        entry: dict = {"folder": folder}
        if manifest.is_file():
            m = json.loads(manifest.read_text())
            entry.update(
                manifest_sha256=_sha256(manifest),
                images=m.get("images"),
                source=m.get("source"),
                licence=m.get("licence"),
                origin=m.get("origin"),
            )
        out.append(entry)
    return out


def build_card(root: Path, name: str) -> tuple[dict, Path]:
    """card.json's content for the run in checkout `root`, and the weights file it describes."""
    params = load_params(root / "params.yaml")
    weights = root / params.evaluate.weights
    run = json.loads((root / params.train.out / RUN_FILE).read_text())
    metrics = json.loads((root / params.evaluate.out / "metrics.json").read_text())
    if not gains(metrics):
        raise ValueError(f"{params.evaluate.out}/metrics.json has no CAJNN rows: run the evaluate stage first")
    model_config = json.loads(config_path_for(weights).read_text())
    card = {
        "name": name,
        "exported_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": _git_commit(root),
        "preset": params.preset,
        "retrain": RETRAIN if name == params.preset else f"dvc exp run -S preset={params.preset}",
        "model": {"config": model_config, "params": run.get("params"), "preset": run.get("model_preset")},
        "training": {
            k: run.get(k)
            for k in (
                "iterations",
                "optimizer_steps",
                "batch_size",
                "crop",
                "train_key",
                "resumed_from",
                "val_psnr_y",
                "exported",
            )
        },
        "mlflow_run": {"run_id": run.get("run_id"), "run_name": run.get("run_name")},
        "train_params": to_dict(params.train),
        "data": {
            **(run.get("data") or {}),
            "profile_settings": to_dict(params.degrade.profiles[params.degrade.profile]),
            "stride": params.degrade.stride,
            "folders": _data_sources(root, list(params.degrade.inputs)),
        },
        "evaluation": {
            "protocol": "PSNR-Y / SSIM-Y, border 4; MATLAB bicubic x1/4 then JPEG (4:2:0) at each QF",
            "sets": {k: v for k, v in to_dict(params.evaluate).get("sets", {}).items()},
            "metrics": {k: v for k, v in metrics.items() if "/" in k},
            "gain_over_bicubic_db": gains(metrics),
            "gain_over_bicubic_db_self_ensemble": gains(metrics, "cajnn_x8"),
        },
        "weights_sha256": _sha256(weights),
    }
    return card, weights


def card_markdown(card: dict) -> str:
    """MODEL_CARD.md: what the model is for, where it came from, what it scores."""
    from cajnn.serving.registry import model_card

    ev = card["evaluation"]
    gains_rows = "\n".join(
        f"| {' | '.join(map(str, parse_point(k)))} | {v:+.2f} | "
        f"{ev['gain_over_bicubic_db_self_ensemble'].get(k, float('nan')):+.2f} |"
        for k, v in ev["gain_over_bicubic_db"].items()
    )
    sources = "\n".join(
        f"- `{s['folder']}`: {s.get('images', '?')} images from `{s.get('source', '?')}`; "
        f"licence: {s.get('licence') or 'see the source'}"
        for s in card["data"]["folders"]
    )
    training = {
        **card["training"],
        **card["mlflow_run"],
        "params": card["model"]["params"],
        "model_preset": card["model"]["preset"],
        "preset": card["preset"],
        "data": card["data"],
    }
    return (
        "\n\n".join(
            [
                f"# Shipped model `{card['name']}`",
                "CAJNN that removes JPEG artifacts and upscales x4 in one pass, trained by this project's own "
                f"pipeline (preset `{card['preset']}`) on a 2-core CPU. It is what `cajnn enhance` uses when no "
                "registry champion exists, and what `register` seeds an empty registry with.",
                "## Gains over bicubic on the held-out photos (PSNR-Y, dB)",
                "| Set | QF | CAJNN | self-ensembled |\n|---|---|---|---|\n" + gains_rows,
                model_card(card["model"]["config"], training, ev["metrics"]),
                "## Data and licences",
                "Training images (nothing else was used; other photo and wallpaper collections are kept for held-out "
                "checks):\n" + sources,
                "## Retrain",
                f"`{card['retrain']}` (code at commit `{card['commit'][:12]}`), then `python -m cajnn.shipped.export "
                f"--name {card['name']}`. Weights sha256 `{card['weights_sha256']}`.",
            ]
        )
        + "\n"
    )


def export(root: Path, name: str, dest: Path = HERE) -> Path:
    """Write `dest/<name>/` from the pipeline outputs in `root`; returns the folder."""
    card, weights = build_card(root, name)
    size = weights.stat().st_size + config_path_for(weights).stat().st_size
    if size > MAX_BYTES:
        raise ValueError(
            f"{weights} is {size / 2**20:.1f} MiB; a shipped model may add at most "
            f"{MAX_BYTES / 2**20:.0f} MiB to the package"
        )
    with atomic_dir(dest / name) as out:
        shutil.copyfile(weights, out / WEIGHTS_FILE)
        shutil.copyfile(config_path_for(weights), config_path_for(out / WEIGHTS_FILE))
        write_json_atomic(out / CARD_FILE, card)
        write_text_atomic(out / CARD_MD, card_markdown(card))
    return dest / name


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="shipped model name (folder under cajnn/shipped/)")
    ap.add_argument("--root", type=Path, default=Path.cwd(), help="checkout whose pipeline outputs are exported")
    args = ap.parse_args(argv)
    try:
        out = export(args.root.resolve(), args.name)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    card = json.loads((out / CARD_FILE).read_text())
    size = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    gains_line = ", ".join(f"{k} {v:+.2f} dB" for k, v in card["evaluation"]["gain_over_bicubic_db"].items())
    print(f"shipped model {args.name}: {out} ({size:.1f} MiB); over bicubic: {gains_line}")


if __name__ == "__main__":
    main()
