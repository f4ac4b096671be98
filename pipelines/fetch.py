"""DVC stage `fetch`: put each source's HR images under `fetch.dest/<dataset>/` + manifests.

Sources, the data registry and the download cache: see `cajnn.fetch.sources`. The whole output
folder is built beside `fetch.dest` and swapped in at the end (a failure leaves the previous
output untouched). Downloads and S3 objects live in `fetch.cache_dir`, outside the output and
not a DVC output, so re-running after adding a source only downloads what is new.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

from cajnn.atomic import atomic_dir
from cajnn.config import FetchConfig
from cajnn.fetch.errors import FetchError
from cajnn.fetch.files import human_bytes
from cajnn.fetch.sources import FetchOptions, FetchReport, fetch_all
from pipelines._common import ROOT, stage


def collect(cfg: FetchConfig, dest: Path, root: Path = ROOT) -> FetchReport:
    """Fetch every configured source into `dest` (an empty staging folder) + manifests."""
    opts = FetchOptions.from_config(cfg, root)  # checks the cache against the final dest
    return fetch_all(cfg.sources, replace(opts, dest=dest))


def main() -> None:
    with stage("fetch") as params:
        cfg = params.fetch
        try:
            with atomic_dir(ROOT / cfg.dest) as dest:
                report = collect(cfg, dest)
        except FetchError as exc:
            if os.environ.get("CAJNN_DEBUG"):
                raise
            print(f"[fetch] error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        files = sum(len(ds.files) for ds in report.datasets)
        skipped = [s for ds in report.datasets for s in ds.skipped if "file" in s]
        print(
            f"[fetch] {files} images in {', '.join(ds.name for ds in report.datasets)} under {cfg.dest}; "
            f"{len(skipped)} unreadable skipped; downloaded {human_bytes(report.downloaded_bytes)}"
            + (f", {len(report.archives_from_cache)} archive(s) from the cache" if report.archives_from_cache else "")
            + (
                f"; S3: {report.s3_transferred} objects transferred, {report.s3_reused} unchanged"
                if report.s3_transferred or report.s3_reused
                else ""
            )
        )
        for s in skipped:
            print(f"[fetch] skipped {s['file']}: {s['reason']}", file=sys.stderr)


if __name__ == "__main__":
    main()
