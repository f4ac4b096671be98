"""DVC stage `degrade`: HR images -> JPEG-degraded LR -> aligned patch shards, as Ray tasks.

The driver's node reads the input files; each image is degraded by a Ray task anywhere in the
cluster, which returns its Parquet shard as bytes through the object store; the driver writes
the shards, so workers need no shared disk and the output does not depend on how many nodes,
CPUs or tasks did the work. Unreadable or too-small images are recorded in the manifest
(`skipped`, with the reason) and the stage carries on.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from cajnn import console
from cajnn.atomic import atomic_dir, write_bytes_atomic, write_json_atomic
from cajnn.config import DegradeConfig, to_dict
from cajnn.data.image_io import list_images
from cajnn.data.pairs import list_pairs, pair_to_shard
from cajnn.data.shards import REAL_PAIR, SCHEMA, degrade_image
from pipelines._common import ROOT, init_ray, stage


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
        pairs, unmatched = list_pairs(cfg.pairs, ROOT)
        if not items and not pairs:
            raise FileNotFoundError(f"no images under {cfg.inputs + cfg.pairs}; run the fetch stage first")
        init_ray(params.ray)
        with atomic_dir(out) as partial:
            manifest = degrade_all(
                items + pairs,
                partial,
                cfg,
                progress=True,
                task_resources=params.ray.task_resources,
                unmatched=unmatched,
            )
        ray.shutdown()
        print(
            f"[degrade] profile {cfg.profile!r}: {manifest['patches']} patch pairs from {manifest['images']} "
            f"images ({manifest['bytes'] / 1e6:.1f} MB, {manifest['bytes_per_hr_megapixel'] / 1e6:.2f} MB per HR "
            f"megapixel) in {cfg.out}"
            + (f", {manifest['real_pairs']} of them real pairs" if cfg.pairs else "")
            + f"; {len(manifest['skipped'])} images skipped"
            + (f", {manifest['flat_positions_dropped']} flat patch positions left out" if cfg.min_patch_std else "")
        )
        for s in manifest["skipped"]:
            print(f"[degrade] skipped {s['file']}: {s['reason']}", file=sys.stderr)


def degrade_all(
    items: list[dict],
    out: Path,
    cfg: DegradeConfig,
    in_flight: int | None = None,
    progress: bool = False,
    task_resources: dict[str, float] | None = None,
    unmatched: list[dict] | None = None,
) -> dict:
    """One Ray task per image, at most `in_flight` at a time (default: 2 per CPU of the cluster):
    the driver reads the image file (its node has the input folders) and hands the bytes to the
    task through the object store; the task degrades it wherever Ray places it
    (`task_resources`: custom resources it asks for, e.g. to run on worker nodes) and returns the
    shard's Parquet bytes, which the driver writes to `out`. No task needs the driver's disk, the
    shards land where DVC expects them, and the driver holds at most `in_flight` images and
    shards. Items with a `copy` are real pairs (:mod:`cajnn.data.pairs`): the driver reads both
    files; `unmatched` pair files are listed as skipped. Returns the manifest, also written to
    ``out/manifest.json``.

    Plain tasks, not a Ray Data pipeline: the same work as `from_items -> map(read, pinned to the
    driver's node) -> map(degrade)` with the driver writing took 3.5x (1 CPU) to 6.1x (2 CPUs)
    as long on 24 1024x768 images (benchmarks/bench_degrade.py, side by side): the two
    operators wait on each other. A `write_parquet` sink would name and cut files by Ray's
    blocks, so the bytes would depend on the number of CPUs.

    The result is the same whatever the number of nodes, CPUs or tasks in flight: each shard
    depends only on its image, the parameters and the seed, and the manifest is sorted.
    """
    import ray

    cfg_dict = to_dict(cfg)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    window = max(1, in_flight or 2 * cpus)
    task = ray.remote(_degrade_task).options(**({"resources": dict(task_resources)} if task_resources else {}))

    def finished() -> Iterator[dict]:
        pending, todo = [], iter(items)
        while True:
            while len(pending) < window and (row := next(todo, None)) is not None:
                try:
                    data, error = Path(row["path"]).read_bytes(), ""
                    copy = Path(row["copy"]).read_bytes() if row.get("copy") else None
                except OSError as exc:
                    data, copy, error = b"", None, f"cannot read file ({exc.strerror}: {exc.filename})"
                pending.append(task.remote(row["path"], row["relpath"], data, error, cfg_dict, copy))
            if not pending:
                return
            ready, pending = ray.wait(pending, num_returns=1)
            meta, shard = ray.get(ready[0])
            if shard:
                write_bytes_atomic(out / meta["shard"], shard)
            yield meta

    rows = console.progress(finished(), total=len(items), desc="degrade", unit="image", disable=not progress)
    results = sorted(rows, key=lambda r: r["source"])
    shards = [r for r in results if not r["skipped"]]
    skipped = [{"file": r["source"], "reason": r["skipped"]} for r in results if r["skipped"]]
    skipped = sorted(skipped + list(unmatched or []), key=lambda r: r["file"])
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
        "real_pairs": sum(r["kind"] == REAL_PAIR for r in shards),
        "shards": [
            {
                k: (int(r[k]) if k in ("rows", "bytes", "hr_pixels") else r[k])
                for k in ("source", "shard", "rows", "bytes", "hr_pixels", "qualities", "draws", "kind")
                + (("shift",) if r["kind"] == REAL_PAIR else ())
            }
            for r in shards
        ],
        "skipped": skipped,
        "sha256": digest.hexdigest(),
    }
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


def _degrade_task(
    path: str, relpath: str, data: bytes, error: str, cfg_dict: dict, copy: bytes | None = None
) -> tuple[dict, bytes | None]:
    """A Ray task: one image's (or real pair's, with `copy`) manifest row and its shard's bytes
    (None when skipped)."""
    from cajnn.config import DegradeConfig, from_dict
    from cajnn.data.shards import ShardResult

    cfg = from_dict(DegradeConfig, cfg_dict)
    if error:
        res, shard = ShardResult(relpath, None, 0, 0, [], skipped=error), None
    elif copy is not None:
        res, shard = pair_to_shard(relpath, data, copy, cfg)
    else:
        res, shard = degrade_image(path, relpath, cfg, data=data)
    meta = {k: (v if v is not None else "") for k, v in asdict(res).items()}
    meta["qualities"] = ",".join(map(str, res.qualities))
    meta["draws"] = ";".join(res.draws)
    return meta, shard


if __name__ == "__main__":
    main()
