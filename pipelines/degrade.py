"""DVC stage `degrade`: HR images -> JPEG-degraded LR -> aligned patch shards, on Ray Data.

Each input image is one task that writes its own Parquet shard and returns only a small
metadata row, so the driver never holds pixels and the output does not depend on how many
CPUs or blocks did the work.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import asdict
from pathlib import Path

from cajnn.config import DegradeConfig, to_dict
from cajnn.data.image_io import list_images
from cajnn.data.shards import degrade_to_shard
from pipelines._common import ROOT, init_ray, stage, staged_dir, write_json


def main() -> None:
    with stage("degrade") as params:
        import ray
        import ray.data

        cfg = params.degrade
        cfg.selected_profile()  # fail early on an unknown profile name
        out = ROOT / cfg.out
        items = []
        for folder in cfg.inputs:
            base = ROOT / folder
            for path in list_images(base):
                items.append({"path": str(path), "relpath": f"{Path(folder).name}/{path.relative_to(base)}"})
        if not items:
            raise FileNotFoundError(f"no images under {cfg.inputs}; run the fetch stage first")
        init_ray(params.ray)
        with staged_dir(out) as partial:
            manifest = degrade_all(items, partial, cfg)
        ray.shutdown()
        print(
            f"[degrade] {manifest['patches']} patch pairs from {manifest['images']} images "
            f"({manifest['bytes'] / 1e6:.1f} MB) in {cfg.out}; {len(manifest['skipped'])} skipped"
        )
        for s in manifest["skipped"]:
            print(f"[degrade] skipped {s['file']}: {s['reason']}", file=sys.stderr)


def degrade_all(items: list[dict], out: Path, cfg: DegradeConfig) -> dict:
    """One Ray Data task per image writes that image's shard; returns the manifest."""
    import ray.data

    cfg_dict = to_dict(cfg)

    def process(row: dict) -> dict:
        from cajnn.config import DegradeConfig, from_dict

        res = degrade_to_shard(row["path"], row["relpath"], str(out), from_dict(DegradeConfig, cfg_dict))
        return {k: (v if v is not None else "") for k, v in asdict(res).items()} | {
            "qualities": ",".join(map(str, res.qualities))
        }

    ds = ray.data.from_items(items, override_num_blocks=len(items)).map(process)
    results = sorted(ds.iter_rows(), key=lambda r: r["source"])  # metadata only
    shards = [r for r in results if not r["skipped"]]
    skipped = [{"file": r["source"], "reason": r["skipped"]} for r in results if r["skipped"]]
    digest = hashlib.sha256()
    for name in sorted(r["shard"] for r in shards):
        digest.update(name.encode())
        with (out / name).open("rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    manifest = {
        "profile": cfg.profile,
        "profile_config": to_dict(cfg.selected_profile()),
        "seed": cfg.seed,
        "qualities_per_image": cfg.qualities_per_image,
        "patch_size_lr": cfg.patch_size,
        "stride_lr": cfg.stride,
        "images": len(shards),
        "patches": sum(int(r["rows"]) for r in shards),
        "bytes": sum(int(r["bytes"]) for r in shards),
        "shards": [{k: r[k] for k in ("source", "shard", "rows", "bytes", "qualities")} for r in shards],
        "skipped": skipped,
        "sha256": digest.hexdigest(),
    }
    write_json(out / "manifest.json", manifest)
    return manifest


if __name__ == "__main__":
    main()
