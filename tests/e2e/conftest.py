"""The real S3 endpoint (`moto_server` on 127.0.0.1) of the integration tests, for `dvc push`."""

from tests.integration.conftest import moto_endpoint  # noqa: F401 (pytest fixture)
