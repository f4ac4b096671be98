"""DVC stage `degrade`: HR images -> JPEG-degraded LR -> aligned patch shards, on Ray Data.

Each input image is one task that writes its own Parquet shard and returns only a small
metadata row, so the driver never holds pixels and the output does not depend on how many
CPUs or blocks did the work. Unreadable or too-small images are recorded in the manifest
(`skipped`, with the reason) and the stage carries on.
"""

from __future__ import annotations

import hashlib
import math
import sys
from dataclasses import asdict
from pathlib import Path

from cajnn import console
from cajnn.config import DegradeConfig, to_dict
from cajnn.data.image_io import list_images
from cajnn.data.shards import SCHEMA, degrade_to_shard
from pipelines._common import ROOT, init_ray, stage, staged_dir, write_json


def list_items(inputs: list[str], root: Path) -> list[dict]:
    """Every image under the input folders as {"path", "relpath"}; relpath (folder name +
    path inside it) names the shard and seeds the image's draws, so it must be unique."""
    items, seen = [], {}
    for folder in inputs:
        base = root / folder
        for path in list_images(base):
            relpath = f"{Path(folder).name}/{path.relative_to(base).as_posix()}"
            if relpath in seen:
                raise ValueError(
                    f"{path} and {seen[relpath]} both map to {relpath!r}: input folders need distinct names"
                )
            seen[relpath] = path
            items.append({"path": str(path), "relpath": relpath})
    return items


def main() -> None:
    with stage("degrade") as params:
        import ray

        cfg = params.degrade
        cfg.selected_profile()  # fail early on an unknown profile name
        out = ROOT / cfg.out
        items = list_items(cfg.inputs, ROOT)
        if not items:
            raise FileNotFoundError(f"no images under {cfg.inputs}; run the fetch stage first")
        init_ray(params.ray)
        with staged_dir(out) as partial:
            manifest = degrade_all(items, partial, cfg, progress=True)
        ray.shutdown()
        print(
            f"[degrade] profile {cfg.profile!r}: {manifest['patches']} patch pairs from {manifest['images']} "
            f"images ({manifest['bytes'] / 1e6:.1f} MB, {manifest['bytes_per_hr_megapixel'] / 1e6:.2f} MB per HR "
            f"megapixel) in {cfg.out}; {len(manifest['skipped'])} images skipped"
            + (f", {manifest['flat_positions_dropped']} flat patch positions left out" if cfg.min_patch_std else "")
        )
        for s in manifest["skipped"]:
            print(f"[degrade] skipped {s['file']}: {s['reason']}", file=sys.stderr)


def default_blocks(n_items: int, cpus: int) -> int:
    """Blocks (= Ray tasks) for `n_items` images: at least 4 per CPU for load balance while
    that is possible, and at most 4 images per block, so a task's start-up cost (tens of ms)
    stays small next to its work (~0.1-0.5 s per image)."""
    return max(1, min(n_items, max(4 * cpus, math.ceil(n_items / 4))))


def degrade_all(items: list[dict], out: Path, cfg: DegradeConfig, num_blocks: int | None = None,
                progress: bool = False) -> dict:
    """Ray Data tasks over blocks of images (default: :func:`default_blocks`) write each image's
    shard; returns the manifest, also written to ``out/manifest.json``.

    Only metadata rows (a few hundred bytes per image) flow back through Ray Data to the driver,
    which consumes them as a stream; pixels never leave the task that made them. The result is
    the same whatever the number of CPUs or blocks: each shard depends only on its image, the
    parameters and the seed, and the manifest is sorted.
    """
    import ray
    import ray.data

    cfg_dict = to_dict(cfg)
    out_dir = str(out)

    def process(row: dict) -> dict:
        from cajnn.config import DegradeConfig, from_dict

        res = degrade_to_shard(row["path"], row["relpath"], out_dir, from_dict(DegradeConfig, cfg_dict))
        meta = {k: (v if v is not None else "") for k, v in asdict(res).items()}
        meta["qualities"] = ",".join(map(str, res.qualities))
        meta["draws"] = ";".join(res.draws)
        return meta

    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
    blocks = max(1, min(num_blocks or default_blocks(len(items), cpus), len(items)))
    ctx = ray.data.DataContext.get_current()
    reservation = ctx.op_resource_reservation_enabled
    # One operator, nothing to reserve CPUs for; with the reservation on, Ray Data 2.60 held
    # the second CPU back for about a second before its first task (measured on 2 CPUs).
    ctx.op_resource_reservation_enabled = False
    try:
        ds = ray.data.from_items(items, override_num_blocks=blocks).map(process)
        rows = console.progress(ds.iter_rows(), total=len(items), desc="degrade", unit="image", disable=not progress)
        results = sorted(rows, key=lambda r: r["source"])  # metadata only, streamed
    finally:
        ctx.op_resource_reservation_enabled = reservation
    shards = [r for r in results if not r["skipped"]]
    skipped = [{"file": r["source"], "reason": r["skipped"]} for r in results if r["skipped"]]
    digest = hashlib.sha256()
    for name in sorted(r["shard"] for r in shards):
        digest.update(name.encode())
        with (out / name).open("rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    total_bytes = sum(int(r["bytes"]) for r in shards)
    hr_mp = sum(int(r["hr_pixels"]) for r in shards) / 1e6
    manifest = {
        "profile": cfg.profile,
        "profile_config": to_dict(cfg.selected_profile()),
        "seed": cfg.seed,
        "qualities_per_image": cfg.qualities_per_image,
        "patch_size_lr": cfg.patch_size,
        "stride_lr": cfg.stride,
        "format": "parquet",
        "columns": list(SCHEMA.names),
        "images": len(shards),
        "lr_images": len(shards) * cfg.qualities_per_image,
        "patches": sum(int(r["rows"]) for r in shards),
        "min_patch_std": cfg.min_patch_std,
        "flat_positions_dropped": sum(int(r["flat"] or 0) for r in results),
        "bytes": total_bytes,
        "hr_megapixels": round(hr_mp, 6),
        "bytes_per_hr_megapixel": round(total_bytes / hr_mp) if hr_mp else 0,
        "shards": [
            {k: (int(r[k]) if k in ("rows", "bytes", "hr_pixels") else r[k])
             for k in ("source", "shard", "rows", "bytes", "hr_pixels", "qualities", "draws")}
            for r in shards
        ],
        "skipped": skipped,
        "sha256": digest.hexdigest(),
    }
    write_json(out / "manifest.json", manifest)
    return manifest


if __name__ == "__main__":
    main()
