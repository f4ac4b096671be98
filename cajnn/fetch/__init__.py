"""Dataset acquisition for the `fetch` stage and `cajnn fetch`.

Modules: :mod:`registry` (the data registry file: URLs, sizes, checksums, licences),
:mod:`http` (resumable, verified downloads into a cache), :mod:`archives` (safe zip/tar
extraction), :mod:`s3` (parallel prefix download with a change state, folder upload),
:mod:`sources` (source strings -> dataset folders + manifests). Network libraries are imported
only by the modules that need them, so `import cajnn.fetch` stays cheap.
"""

from cajnn.fetch.errors import (
    BucketNotFoundError,
    ChecksumError,
    CredentialsError,
    DiskFullError,
    FetchError,
    NetworkError,
    NotFoundError,
    UnsafeArchiveError,
)

__all__ = [
    "BucketNotFoundError",
    "ChecksumError",
    "CredentialsError",
    "DiskFullError",
    "FetchError",
    "NetworkError",
    "NotFoundError",
    "UnsafeArchiveError",
]
