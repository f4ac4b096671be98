"""Source strings, options and manifests of the fetch stage (no network)."""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cajnn.config import ConfigError, FetchConfig, load_params
from cajnn.config.fetch import S3Config
from cajnn.fetch import DiskFullError
from cajnn.fetch.files import disk_full_is_clear
from cajnn.fetch.sources import FetchOptions, _parse_checksum, fetch_all, plan

REPO = Path(__file__).resolve().parents[2]


def opts(tmp_path: Path, **kw) -> FetchOptions:
    cfg = FetchConfig(
        dest=str(tmp_path / "raw"), cache_dir=str(tmp_path / "cache"), registry=str(REPO / "data_registry.yaml")
    )
    return FetchOptions.from_config(cfg, tmp_path, progress=False, **kw)


def test_params_fetch_section_is_typed(tmp_path):
    p = load_params(REPO / "params.yaml")
    assert p.fetch.cache_dir == "~/.cache/cajnn" and p.fetch.registry == "data_registry.yaml"
    assert p.fetch.s3 == S3Config() and p.fetch.http.retries == 5 and p.fetch.manga109 is None
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"fetch": {"s3": {"endpoint": "http://x"}}}))
    with pytest.raises(ConfigError, match="fetch.s3.*endpoint"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"fetch": {"s3": {"endpoint_url": "http://x", "workers": 2}}}))
    assert load_params(tmp_path / "params.yaml").fetch.s3 == S3Config(endpoint_url="http://x", workers=2)


def test_cache_inside_the_output_is_refused(tmp_path):
    cfg = FetchConfig(dest=str(tmp_path / "raw"), cache_dir=str(tmp_path / "raw" / "cache"))
    with pytest.raises(ConfigError, match="cache must be outside"):
        FetchOptions.from_config(cfg, tmp_path)
    home = FetchOptions.from_config(FetchConfig(), tmp_path)
    assert home.cache_dir == Path.home() / ".cache" / "cajnn" and home.dest == tmp_path / "data" / "raw"


def test_plan_groups_parts_by_archive_and_refuses_overlaps(tmp_path):
    jobs, notes = plan(["div2k:train", "benchmark", "sample", "s3://bkt/web/2024", "div2k:train"], opts(tmp_path))
    assert [j.label for j in jobs] == [
        "div2k:train",
        "benchmark:Set5,Set14,B100,Urban100",
        "sample",
        "s3://bkt/web/2024",
    ]
    assert jobs[1].targets == [f"benchmark/{s}/HR" for s in ("Set5", "Set14", "B100", "Urban100")]
    assert len(notes) == 1 and "Manga109" in notes[0]

    (tmp_path / "x" / "benchmark").mkdir(parents=True)
    with pytest.raises(ConfigError, match="both write benchmark"):
        plan(["benchmark:Set5", "local:x/benchmark"], opts(tmp_path))
    with pytest.raises(ConfigError, match="both write web"):
        plan(["s3://bucket-a/web", "s3://bucket-b/web"], opts(tmp_path))
    with pytest.raises(ConfigError, match="no such folder"):
        plan(["local:missing"], opts(tmp_path))
    with pytest.raises(ConfigError, match="bucket name"):
        plan(["s3://"], opts(tmp_path))
    with pytest.raises(ConfigError, match="unknown sample images"):
        plan(["sample"], opts(tmp_path, holdout=["chelsea", "cat"]))
    with pytest.raises(ConfigError, match="empty"):
        plan([], opts(tmp_path))


def test_local_folder_and_summary_manifest(tmp_path):
    src = tmp_path / "photos"
    (src / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "a" / "one.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (src / "notes.txt").write_text("ignored")
    o = opts(tmp_path)
    fetch_all(["local:photos"], o, log=lambda m: None)
    manifest = json.loads((o.dest / "photos" / "manifest.json").read_text())
    assert [f["file"] for f in manifest["files"]] == ["a/one.png"]
    assert manifest["files"][0]["sha256"] == hashlib.sha256((src / "a" / "one.png").read_bytes()).hexdigest()
    assert manifest["skipped"][0]["file"].endswith("broken.jpg") and manifest["licence"].startswith("user-supplied")
    summary = json.loads((o.dest / "manifest.json").read_text())
    assert summary["sources"] == ["local:photos"]
    assert summary["files"][0]["file"] == "photos/a/one.png" and summary["files"][0]["dataset"] == "photos"
    assert summary["skipped"][0]["dataset"] == "photos"

    # fetching another source into the same folder keeps the first dataset in the summary;
    # refetching a dataset replaces it
    src2 = tmp_path / "more"
    src2.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(src2 / "two.png")
    fetch_all(["local:more"], o, log=lambda m: None)
    summary = json.loads((o.dest / "manifest.json").read_text())
    assert set(summary["datasets"]) == {"photos", "more"} and summary["sources"] == ["local:photos", "local:more"]
    (src / "a" / "one.png").unlink()
    Image.fromarray(np.ones((8, 8, 3), np.uint8)).save(src / "three.png")
    fetch_all(["local:photos"], o, log=lambda m: None)
    summary = json.loads((o.dest / "manifest.json").read_text())
    assert sorted(f["file"] for f in summary["files"]) == ["more/two.png", "photos/three.png"]
    assert not (o.dest / "photos" / "a").exists()


def test_stage_collect_sample_split(tmp_path):
    from pipelines.fetch import collect

    cfg = FetchConfig(holdout=["coffee"], cache_dir=str(tmp_path / "cache"))
    report = collect(cfg, tmp_path / "staged", root=tmp_path)
    assert [d.name for d in report.datasets] == ["sample-train", "sample-holdout"]
    assert sorted(p.name for p in (tmp_path / "staged" / "sample-holdout").iterdir()) == ["coffee.png", "manifest.json"]
    summary = json.loads((tmp_path / "staged" / "manifest.json").read_text())
    assert len(summary["files"]) == 9 and summary["sources"] == ["sample"]
    assert not (tmp_path / "cache").exists()  # nothing to download: the cache is not even created


def test_checksum_strings():
    assert _parse_checksum("md5:" + "A" * 32) == {"md5": "a" * 32}
    assert _parse_checksum("b" * 64) == {"sha256": "b" * 64}
    assert _parse_checksum(None) == {}
    with pytest.raises(ConfigError, match="manga109_checksum"):
        _parse_checksum("crc:1234")


def test_manga109_from_a_local_folder(tmp_path):
    folder = tmp_path / "m109"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "Title.png")
    o = opts(tmp_path, manga109="m109")
    fetch_all(["benchmark:Manga109"], o, log=lambda m: None)
    assert (o.dest / "benchmark" / "Manga109" / "HR" / "Title.png").is_file()
    with pytest.raises(ConfigError, match="fetch.manga109"):
        fetch_all(["benchmark:Manga109"], opts(tmp_path, manga109="nothing-here"), log=lambda m: None)


def test_disk_full_is_translated():
    with pytest.raises(DiskFullError, match="div2k:train: disk full while writing /x"):
        with disk_full_is_clear("div2k:train", Path("/x")):
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(PermissionError):
        with disk_full_is_clear("t", Path("/x")):
            raise PermissionError(errno.EACCES, "denied")


def test_s3_uri_and_expected_etag(tmp_path):
    from cajnn.fetch.s3 import expected_etag, parse_s3_uri

    u = parse_s3_uri("s3://bucket/web/2024")
    assert (u.bucket, u.prefix, u.name, str(u)) == ("bucket", "web/2024/", "2024", "s3://bucket/web/2024/")
    assert parse_s3_uri("s3://bucket").name == "bucket" and parse_s3_uri("s3://bucket/").prefix == ""
    with pytest.raises(ValueError):
        parse_s3_uri("s3://bucket/a/../b")
    f = tmp_path / "f.bin"
    f.write_bytes(b"x" * 100)
    assert expected_etag(f, 8 << 20, 8 << 20) == hashlib.md5(b"x" * 100).hexdigest()
    parts = [hashlib.md5(b"x" * 40).digest(), hashlib.md5(b"x" * 40).digest(), hashlib.md5(b"x" * 20).digest()]
    from unittest import mock

    with mock.patch("s3transfer.utils.ChunksizeAdjuster.adjust_chunksize", lambda self, c, s: c):
        assert expected_etag(f, 50, 40) == hashlib.md5(b"".join(parts)).hexdigest() + "-3"


def test_connection_errors_are_described():
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    from cajnn.fetch.http import _describe_connection_error

    dns = NameResolutionError("host.invalid", None, "[Errno -2] Name or service not known")
    assert "DNS lookup failed" in _describe_connection_error(dns)
    refused = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    assert "connection refused" in _describe_connection_error(refused)
