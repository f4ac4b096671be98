"""Fetch errors. Every message names the source and says what to do about it."""

from __future__ import annotations


class FetchError(Exception):
    """A source could not be fetched; the message names the source and the remedy."""


class NetworkError(FetchError):
    """Host unreachable, DNS failure, repeated interruptions or server errors."""


class NotFoundError(FetchError):
    """HTTP 404/410: the mirror moved or dropped the file."""


class ChecksumError(FetchError):
    """A download's size or checksum does not match the registry; the file is kept aside."""


class DiskFullError(FetchError):
    """No space left on the device (ENOSPC), or not enough free space for a known size."""


class UnsafeArchiveError(FetchError):
    """An archive entry with an absolute path, `..`, or a link leaving the destination."""


class CredentialsError(FetchError):
    """No AWS credentials in the standard chain, or credentials the endpoint refuses."""


class BucketNotFoundError(FetchError):
    """The S3 bucket does not exist (at this endpoint / in this region)."""
