"""DVC stage `fetch`: put each source's HR images under `fetch.dest/<dataset>/` + a manifest."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from cajnn.config import FetchConfig
from cajnn.data.image_io import ImageLoadError, list_images, load_rgb, save_rgb
from cajnn.data.sample import SAMPLE_IMAGES, load_sample
from pipelines._common import ROOT, stage, staged_dir, write_json

LOCAL_PREFIX = "local:"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_sample(dest: Path, holdout: list[str]) -> list[dict]:
    unknown = sorted(set(holdout) - set(SAMPLE_IMAGES))
    if unknown:
        raise ValueError(f"fetch.holdout names unknown sample images {unknown}; known: {list(SAMPLE_IMAGES)}")
    rows = []
    for name in SAMPLE_IMAGES:
        split = "sample-holdout" if name in holdout else "sample-train"
        path = dest / split / f"{name}.png"
        save_rgb(load_sample(name), path, compress_level=1)
        rows.append({"dataset": split, "file": str(path.relative_to(dest)), "bytes": path.stat().st_size,
                     "sha256": _sha256(path), "source": f"scikit-image data.{name}",
                     "licence": "scikit-image sample data (see skimage/data/README.txt)"})
    return rows


def fetch_local(dest: Path, folder: Path) -> tuple[list[dict], list[dict]]:
    """Copy a folder's readable images; unreadable ones are recorded with their reason."""
    rows, skipped = [], []
    name = folder.name or "local"
    for src in list_images(folder):
        try:
            load_rgb(src)
        except ImageLoadError as exc:
            skipped.append({"file": str(src), "reason": exc.reason})
            continue
        out = dest / name / src.relative_to(folder)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, out)
        rows.append({"dataset": name, "file": str(out.relative_to(dest)), "bytes": out.stat().st_size,
                     "sha256": _sha256(out), "source": str(src), "licence": "user-supplied"})
    return rows, skipped


def main() -> None:
    with stage("fetch") as params:
        cfg = params.fetch
        with staged_dir(ROOT / cfg.dest) as dest:
            files, skipped = collect(cfg, dest)
        datasets = sorted({f["dataset"] for f in files})
        print(f"[fetch] {len(files)} images in {', '.join(datasets)} under {cfg.dest}; {len(skipped)} skipped")
        for s in skipped:
            print(f"[fetch] skipped {s['file']}: {s['reason']}", file=sys.stderr)


def collect(cfg: FetchConfig, dest: Path) -> tuple[list[dict], list[dict]]:
    """Fetch every configured source into `dest` and write the manifest."""
    files, skipped = [], []
    for source in cfg.sources:
        if source == "sample":
            files += fetch_sample(dest, cfg.holdout)
        elif source.startswith(LOCAL_PREFIX):
            got, bad = fetch_local(dest, (ROOT / source[len(LOCAL_PREFIX):]).resolve())
            files += got
            skipped += bad
        else:
            raise ValueError(
                f"fetch source {source!r} is not supported by this version: use 'sample' or "
                f"'{LOCAL_PREFIX}PATH' (a folder of HR images you downloaded yourself)"
            )
    write_json(dest / "manifest.json", {"sources": cfg.sources, "files": files, "skipped": skipped})
    return files, skipped


if __name__ == "__main__":
    main()
