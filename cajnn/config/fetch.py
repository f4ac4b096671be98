"""The `fetch` section."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class HttpConfig:
    """`fetch.http`: how archives are downloaded."""

    retries: int = 5  # per download: failed connections, HTTP 429/5xx, and interruptions (resumed)
    backoff: float = 1.0  # seconds; waits grow as backoff * 2**n
    timeout: float = 60.0  # seconds without data before a connection counts as interrupted


@dataclass(frozen=True)
class S3Config:
    """`fetch.s3`: where `s3://` sources live. Credentials are NOT parameters: they come from
    boto3's standard chain (AWS_* environment, ~/.aws files, `profile`, instance roles)."""

    endpoint_url: str | None = None  # e.g. http://127.0.0.1:9000 (MinIO, moto); null = AWS
    region: str | None = None  # null = from the environment / profile
    profile: str | None = None  # a profile in ~/.aws/config; null = AWS_PROFILE or default
    workers: int = 8  # parallel listings and transfers


@dataclass(frozen=True)
class FetchConfig:
    """`fetch` section: which datasets to put under `dest`, one folder each.

    Sources: `sample` (embedded photos), `local:PATH`, `s3://BUCKET/PREFIX`, or a source of the
    data registry file (`div2k`, `flickr2k`, `benchmark`, optionally `NAME:PART[,PART]`).
    """

    sources: list[str] = field(default_factory=lambda: ["sample"])
    dest: str = "data/raw"
    # Embedded sample images kept out of training and used by `evaluate` instead.
    holdout: list[str] = field(default_factory=lambda: ["chelsea", "coffee"])
    # Verified downloads and S3 objects; outside `dest` (it is rebuilt each run) and not a DVC
    # output, so re-running or adding a source never downloads the same thing twice.
    cache_dir: str = "~/.cache/cajnn"
    registry: str = "data_registry.yaml"  # URLs, sizes, checksums, licences (repo-relative)
    manga109: str | None = None  # URL of an archive, local archive or folder of Manga109 HR images
    manga109_checksum: str | None = None  # "md5:HEX" or "sha256:HEX" of that archive (recommended)
    http: HttpConfig = field(default_factory=HttpConfig)
    s3: S3Config = field(default_factory=S3Config)
