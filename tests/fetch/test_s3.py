"""`s3://` sources and folder upload against a real S3 HTTP endpoint (`moto_server` on
127.0.0.1): parallel download of a prefix, re-fetch that transfers nothing, changed objects,
clear errors for missing credentials and missing buckets."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

import cajnn.fetch.s3 as s3mod
from cajnn.config import FetchConfig
from cajnn.config.fetch import S3Config
from cajnn.fetch import BucketNotFoundError, CredentialsError, NetworkError
from cajnn.fetch.sources import FetchOptions, fetch_all
from tests.helpers.file_server import sha256
from tests.helpers.servers import free_port

pytestmark = pytest.mark.integration

OBJECTS = {
    "web/2024/a.png": b"a" * 3000,
    "web/2024/sub/b.jpg": b"b" * 5000,
    "web/2024/sub/deeper/c.webp": b"c" * 700,
    "web/2024/notes.txt": b"not an image",
    "web/2024-old/x.png": b"x" * 10,  # same leading characters, another "folder"
    "other/y.png": b"y" * 10,
}
WANTED = {"a.png", "sub/b.jpg", "sub/deeper/c.webp"}
_names = itertools.count()


@pytest.fixture
def bucket(moto_endpoint, aws_env) -> str:
    name = f"cajnn-test-{next(_names)}"
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    client.create_bucket(Bucket=name)
    for key, body in OBJECTS.items():
        client.put_object(Bucket=name, Key=key, Body=body)
    return name


@pytest.fixture
def get_calls(monkeypatch) -> list[str]:
    """Keys of the GetObject requests the fetcher sends (botocore event hook)."""
    calls: list[str] = []
    real = s3mod.make_client

    def counting(cfg, label="s3"):
        client = real(cfg, label)
        client.meta.events.register(
            "before-parameter-build.s3.GetObject", lambda params, **kw: calls.append(params["Key"])
        )
        return client

    monkeypatch.setattr(s3mod, "make_client", counting)
    return calls


def options(tmp_path: Path, endpoint: str, dest: str = "raw", **s3) -> FetchOptions:
    cfg = FetchConfig(
        dest=str(tmp_path / dest),
        cache_dir=str(tmp_path / "cache"),
        s3=S3Config(endpoint_url=endpoint, workers=4, **s3),
    )
    return FetchOptions.from_config(cfg, tmp_path, progress=False)


def listing(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json"}


def test_fetch_prefix_refetch_nothing_then_changed_object(tmp_path, moto_endpoint, bucket, get_calls):
    uri = f"s3://{bucket}/web/2024"
    opts = options(tmp_path, moto_endpoint)
    report = fetch_all([uri], opts, log=lambda m: None)
    out = opts.dest / "2024"
    assert listing(out) == WANTED
    assert (out / "sub" / "b.jpg").read_bytes() == OBJECTS["web/2024/sub/b.jpg"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"] == uri and manifest["origin"]["endpoint_url"] == moto_endpoint
    assert {f["file"]: f["sha256"] for f in manifest["files"]} == {
        rel: sha256(OBJECTS[f"web/2024/{rel}"]) for rel in WANTED
    }
    assert [s["member"] for s in manifest["skipped"]] == ["web/2024/notes.txt"]
    assert sorted(get_calls) == sorted(f"web/2024/{rel}" for rel in WANTED)
    assert report.s3_transferred == 3 and report.s3_transferred_bytes == 8700

    # the stage rebuilds its output: unchanged objects come from the cache, no GET at all
    get_calls.clear()
    again = fetch_all([uri], options(tmp_path, moto_endpoint, dest="raw2"), log=lambda m: None)
    assert get_calls == [] and again.s3_transferred == 0 and again.s3_reused == 3
    assert listing(tmp_path / "raw2" / "2024") == WANTED
    assert (tmp_path / "raw2" / "2024" / "a.png").read_bytes() == OBJECTS["web/2024/a.png"]

    # a changed object (new ETag) is fetched again, and only that one
    boto3.client("s3", endpoint_url=moto_endpoint).put_object(Bucket=bucket, Key="web/2024/a.png", Body=b"A" * 3000)
    third = fetch_all([uri], options(tmp_path, moto_endpoint, dest="raw3"), log=lambda m: None)
    assert get_calls == ["web/2024/a.png"] and third.s3_transferred == 1 and third.s3_reused == 2
    assert (tmp_path / "raw3" / "2024" / "a.png").read_bytes() == b"A" * 3000
    # ...and the earlier output still holds what was fetched then (hard links are never rewritten)
    assert (tmp_path / "raw2" / "2024" / "a.png").read_bytes() == OBJECTS["web/2024/a.png"]


def test_missing_credentials_is_a_clear_error(tmp_path, moto_endpoint, bucket, aws_env):
    aws_env.delenv("AWS_ACCESS_KEY_ID")
    aws_env.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(CredentialsError) as exc:
        fetch_all([f"s3://{bucket}/web/2024"], options(tmp_path, moto_endpoint), log=lambda m: None)
    msg = str(exc.value)
    assert f"s3://{bucket}/web/2024" in msg and "no AWS credentials" in msg and "AWS_ACCESS_KEY_ID" in msg
    assert not (tmp_path / "raw" / "2024").exists()


def test_unknown_profile_is_a_clear_error(tmp_path, moto_endpoint, bucket):
    with pytest.raises(CredentialsError, match="nope.*fetch.s3.profile"):
        fetch_all([f"s3://{bucket}/web"], options(tmp_path, moto_endpoint, profile="nope"), log=lambda m: None)


def test_bucket_not_found_is_a_clear_error(tmp_path, moto_endpoint, aws_env):
    with pytest.raises(BucketNotFoundError) as exc:
        fetch_all(["s3://no-such-bucket-here/web"], options(tmp_path, moto_endpoint), log=lambda m: None)
    msg = str(exc.value)
    assert "no-such-bucket-here" in msg and moto_endpoint in msg and "endpoint_url" in msg


def test_unreachable_endpoint_is_a_clear_error(tmp_path, aws_env):
    aws_env.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's retry settings come from the standard chain too
    endpoint = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(NetworkError, match="cannot reach") as exc:
        fetch_all(["s3://some-bucket/web"], options(tmp_path, endpoint), log=lambda m: None)
    assert "s3://some-bucket/web" in str(exc.value)


def test_upload_mirrors_a_folder_and_skips_unchanged_files(tmp_path, moto_endpoint, aws_env):
    from cajnn.fetch.s3 import upload_folder

    client = boto3.client("s3", endpoint_url=moto_endpoint)
    client.create_bucket(Bucket="mirror")
    folder = tmp_path / "DIV2K_train_HR"
    (folder / "sub").mkdir(parents=True)
    (folder / "0001.png").write_bytes(b"1" * 1000)
    (folder / "sub" / "0002.png").write_bytes(b"2" * 1000)
    (folder / "big.png").write_bytes(bytes(range(256)) * (9 * 4096))  # 9 MiB: multipart upload
    (folder / ".partial").write_bytes(b"hidden: not uploaded")
    cfg = S3Config(endpoint_url=moto_endpoint, workers=4)

    first = upload_folder(folder, "s3://mirror/datasets/div2k", cfg, progress=False)
    assert first.uploaded == 3 and first.unchanged == 0
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="mirror")["Contents"]}
    assert keys == {"datasets/div2k/0001.png", "datasets/div2k/sub/0002.png", "datasets/div2k/big.png"}

    second = upload_folder(folder, "s3://mirror/datasets/div2k", cfg, progress=False)
    assert second.uploaded == 0 and second.unchanged == 3  # incl. the multipart ETag

    (folder / "0001.png").write_bytes(b"changed" * 100)
    third = upload_folder(folder, "s3://mirror/datasets/div2k", cfg, progress=False)
    assert third.keys == ["datasets/div2k/0001.png"]

    # and back: the mirror is a source like any other
    fetch_all(["s3://mirror/datasets/div2k"], options(tmp_path, moto_endpoint), log=lambda m: None)
    assert listing(tmp_path / "raw" / "div2k") == {"0001.png", "sub/0002.png", "big.png"}
    assert (tmp_path / "raw" / "div2k" / "0001.png").read_bytes() == b"changed" * 100


def test_cli_upload_and_fetch(tmp_path, moto_endpoint, bucket):
    from cajnn.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "fetch",
            f"s3://{bucket}/web/2024",
            "--dest",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--endpoint-url",
            moto_endpoint,
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert listing(tmp_path / "out" / "2024") == WANTED

    res = runner.invoke(
        app,
        [
            "upload",
            str(tmp_path / "out" / "2024"),
            f"s3://{bucket}/copy",
            "--endpoint-url",
            moto_endpoint,
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "4 uploaded" in res.output  # three images + the dataset manifest

    res = runner.invoke(
        app,
        [
            "upload",
            str(tmp_path / "out" / "2024"),
            "s3://no-such-bucket-here/copy",
            "--endpoint-url",
            moto_endpoint,
            "--no-progress",
        ],
    )
    assert res.exit_code == 1 and "no-such-bucket-here" in res.output and "not found" in res.output
