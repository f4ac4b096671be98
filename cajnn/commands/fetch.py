"""`cajnn fetch SOURCE... --dest DIR` and `cajnn upload FOLDER s3://BUCKET/PREFIX`.

`fetch` does what the `fetch` stage does for the sources given -- same registry, download cache,
verification, safe extraction and manifests -- but into any folder, adding to what is there:
each dataset folder it fetches is replaced when complete, the others are kept, and
DIR/manifest.json lists them all. Defaults come from the `fetch` section of ./params.yaml when
there is one (cache_dir, registry, s3, http, holdout, manga109). Exit code 1 on any failure,
with a message naming the source and what to do.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer


def _fetch_config(params: Path | None):
    """The `fetch` section of the parameters file (./params.yaml if present) and its folder."""
    from cajnn.config import FetchConfig, load_params

    if params is None and Path("params.yaml").is_file():
        params = Path("params.yaml")
    if params is None:
        # outside a checkout: built-in defaults, paths from the current folder, and the
        # registry file of the checkout this package was installed from
        registry = Path(__file__).resolve().parents[2] / "data_registry.yaml"
        return FetchConfig(registry=str(registry)), Path.cwd()
    return load_params(params).fetch, params.resolve().parent


def _fail(message: str) -> None:
    print(f"cajnn fetch: error: {message}", file=sys.stderr)
    raise typer.Exit(1)


def fetch(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="sample | local:PATH | s3://BUCKET/PREFIX | div2k | flickr2k | benchmark (or NAME:PART[,PART], "
            "e.g. div2k:train, benchmark:Set5,Set14)",
            show_default=False,
        ),
    ],
    dest: Annotated[
        Path | None, typer.Option(help="output folder, one sub-folder per dataset [default: fetch.dest]")
    ] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="download cache [default: fetch.cache_dir]")] = None,
    registry: Annotated[Path | None, typer.Option(help="data registry file [default: fetch.registry]")] = None,
    params: Annotated[Path | None, typer.Option(help="parameters file [default: ./params.yaml if present]")] = None,
    holdout: Annotated[
        list[str] | None, typer.Option(help="sample images held out (repeat) [default: fetch.holdout]")
    ] = None,
    manga109: Annotated[str | None, typer.Option(help="Manga109 archive URL, archive file or folder")] = None,
    manga109_checksum: Annotated[str | None, typer.Option(help="md5:HEX or sha256:HEX of the Manga109 archive")] = None,
    endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint URL [default: fetch.s3.endpoint_url]")] = None,
    region: Annotated[str | None, typer.Option(help="S3 region [default: fetch.s3.region]")] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile [default: fetch.s3.profile]")] = None,
    retries: Annotated[
        int | None, typer.Option(help="HTTP retries/resumes per download [default: fetch.http.retries]")
    ] = None,
    progress: Annotated[bool, typer.Option(help="progress bars (shown on a terminal only)")] = True,
) -> None:
    """Download, verify and unpack datasets into DEST, one folder per dataset with a manifest."""
    from cajnn.config import ConfigError
    from cajnn.fetch.errors import FetchError
    from cajnn.fetch.files import human_bytes
    from cajnn.fetch.sources import FetchOptions, fetch_all

    try:
        cfg, root = _fetch_config(params)
        cfg = replace(
            cfg,
            s3=replace(
                cfg.s3,
                **{
                    k: v
                    for k, v in {"endpoint_url": endpoint_url, "region": region, "profile": profile}.items()
                    if v is not None
                },
            ),
            http=replace(cfg.http, retries=retries) if retries is not None else cfg.http,
        )
        opts = FetchOptions.from_config(
            cfg,
            root,
            dest=dest.resolve() if dest else None,
            cache_dir=cache_dir.resolve() if cache_dir else None,
            registry=registry.resolve() if registry else None,
            holdout=holdout,
            manga109=manga109,
            manga109_checksum=manga109_checksum,
            progress=progress,
        )
        # local: paths on the command line are relative to the current folder
        opts = replace(opts, root=Path.cwd())
        report = fetch_all(sources, opts, log=lambda m: print(m, file=sys.stderr))
    except (FetchError, ConfigError) as exc:
        _fail(str(exc))
    except FileNotFoundError as exc:
        _fail(str(exc))
    for ds in report.datasets:
        print(f"{ds.name}: {len(ds.files)} images ({ds.source})")
        for s in ds.skipped:
            if "file" in s:
                print(f"  skipped {s['file']}: {s['reason']}", file=sys.stderr)
    print(
        f"downloaded {human_bytes(report.downloaded_bytes)}; S3 {report.s3_transferred} objects transferred, "
        f"{report.s3_reused} unchanged; manifest: {opts.dest / 'manifest.json'}"
    )


def upload(
    folder: Annotated[Path, typer.Argument(help="folder to upload (e.g. a dataset folder)", show_default=False)],
    uri: Annotated[str, typer.Argument(help="s3://BUCKET/PREFIX", show_default=False)],
    params: Annotated[Path | None, typer.Option(help="parameters file [default: ./params.yaml if present]")] = None,
    endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint URL [default: fetch.s3.endpoint_url]")] = None,
    region: Annotated[str | None, typer.Option(help="S3 region [default: fetch.s3.region]")] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile [default: fetch.s3.profile]")] = None,
    progress: Annotated[bool, typer.Option(help="progress bar (shown on a terminal only)")] = True,
) -> None:
    """Mirror a folder to an S3 prefix: files already there (same size and ETag) are skipped."""
    from cajnn.config import ConfigError
    from cajnn.fetch.errors import FetchError
    from cajnn.fetch.files import human_bytes
    from cajnn.fetch.s3 import upload_folder

    try:
        cfg, _ = _fetch_config(params)
        s3 = replace(
            cfg.s3,
            **{
                k: v
                for k, v in {"endpoint_url": endpoint_url, "region": region, "profile": profile}.items()
                if v is not None
            },
        )
        result = upload_folder(folder, uri, s3, progress=progress)
    except (FetchError, ConfigError, ValueError) as exc:
        _fail(str(exc))
    print(f"{uri}: {result.uploaded} uploaded ({human_bytes(result.bytes)}), {result.unchanged} unchanged")


def register(app: typer.Typer) -> None:
    app.command()(fetch)
    app.command()(upload)
