"""Registry sources over real HTTP (a threaded server on 127.0.0.1 with Range support):
download, resume, verification, safe extraction, clear errors, the download cache."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cajnn.config import FetchConfig
from cajnn.config.fetch import HttpConfig
from cajnn.fetch import ChecksumError, DiskFullError, NetworkError, NotFoundError, UnsafeArchiveError
from cajnn.fetch.sources import FetchOptions, fetch_all
from tests.helpers.file_server import fake_image, make_tar, make_zip, md5, sha256, write_registry
from tests.helpers.servers import free_port

pytestmark = pytest.mark.integration

FAST_HTTP = HttpConfig(retries=3, backoff=0.01, timeout=10.0)

TOY = {
    "toy/HR/0001.png": fake_image(1),
    "toy/HR/0002.png": fake_image(2),
    "toy/HR/sub/0003.jpg": fake_image(3),
    "toy/HR/readme.txt": b"not an image",
    "toy/LR/X4/0001x4.png": fake_image(4, 200),
}
TOY_HR = {"0001.png", "0002.png", "sub/0003.jpg"}


def options(tmp_path: Path, registry: Path, http: HttpConfig = FAST_HTTP, **kw) -> FetchOptions:
    cfg = FetchConfig(dest=str(tmp_path / "raw"), cache_dir=str(tmp_path / "cache"), registry=str(registry), http=http)
    return FetchOptions.from_config(cfg, tmp_path, progress=False, **kw)


def toy_registry(
    tmp_path: Path, url: str, body: bytes, *, name: str = "toy.zip", checksum: str | None = None, size: int | None = -1
) -> Path:
    arc = {"url": url, "md5": checksum or md5(body)}
    if size is not None:
        arc["bytes"] = len(body) if size == -1 else size
    return write_registry(
        tmp_path / "registry.yaml",
        {name: arc},
        {
            "toy": {
                "licence": "test licence",
                "default": ["hr"],
                "parts": {"hr": {"archive": name, "member": "toy/HR", "to": "toy_HR", "images": 3}},
            },
        },
    )


def listing(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json"}


def no_output(dest: Path) -> bool:
    return not dest.exists() or not [p for p in dest.iterdir() if p.name != "manifest.json"]


def test_clean_download_and_extract_then_cache_hit(tmp_path, http_server):
    body = make_zip(TOY)
    url = http_server.add("/data/toy.zip", body)
    opts = options(tmp_path, toy_registry(tmp_path, url, body))
    report = fetch_all(["toy"], opts, log=lambda m: None)

    out = opts.dest / "toy_HR"
    assert listing(out) == TOY_HR  # images only; the LR folder and the text file are not kept
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"] == "toy:hr" and manifest["licence"] == "test licence"
    assert manifest["origin"]["archive_md5"] == md5(body) and manifest["origin"]["url"] == url
    for row in manifest["files"]:
        assert row["sha256"] == sha256(TOY["toy/HR/" + row["file"]]) and row["bytes"] == len(
            TOY["toy/HR/" + row["file"]]
        )
    assert manifest["skipped"] == [{"member": "toy/HR/readme.txt", "reason": "not an image file"}]
    summary = json.loads((opts.dest / "manifest.json").read_text())
    assert {f["file"] for f in summary["files"]} == {f"toy_HR/{f}" for f in TOY_HR}
    assert report.downloaded_bytes == len(body) and report.notes == []
    assert (opts.cache_dir / "downloads" / "toy.zip").read_bytes() == body

    # the stage output is rebuilt from scratch: the verified archive comes from the cache
    again = fetch_all(["toy"], options(tmp_path, opts.registry, dest=tmp_path / "raw2"), log=lambda m: None)
    assert len(http_server.gets("/data/toy.zip")) == 1
    assert again.downloaded_bytes == 0 and again.archives_from_cache == ["toy.zip"]
    assert listing(tmp_path / "raw2" / "toy_HR") == TOY_HR


def test_parts_of_one_tar_share_one_download(tmp_path, http_server):
    entries = {f"bench/{s}/HR/{i}.png": fake_image(i + 10 * n) for n, s in enumerate(["A", "B"]) for i in range(2)}
    entries.update({"bench/A/LR/0x4.png": b"x"})
    body = make_tar(entries)
    url = http_server.add("/bench.tar", body)
    reg = write_registry(
        tmp_path / "registry.yaml",
        {"bench.tar": {"url": url, "sha256": sha256(body)}},
        {
            "bench": {
                "parts": {s: {"archive": "bench.tar", "member": f"bench/{s}/HR", "to": f"bench/{s}/HR"} for s in "AB"}
            },
        },
    )
    opts = options(tmp_path, reg)
    fetch_all(["bench"], opts, log=lambda m: None)
    assert listing(opts.dest / "bench" / "A" / "HR") == {"0.png", "1.png"}
    assert listing(opts.dest / "bench" / "B" / "HR") == {"0.png", "1.png"}
    assert len(http_server.gets("/bench.tar")) == 1


def test_interrupted_transfer_resumes_with_range(tmp_path, http_server):
    body = make_zip({**TOY, **{f"toy/HR/big{i}.png": fake_image(100 + i, 60_000) for i in range(4)}})
    cut = len(body) // 2
    url = http_server.add("/toy.zip", body, cut_after=cut)
    opts = options(tmp_path, toy_registry(tmp_path, url, body))
    logs: list[str] = []
    report = fetch_all(["toy"], opts, log=logs.append)

    gets = http_server.gets("/toy.zip")
    assert [g["range"] for g in gets] == [None, f"bytes={cut}-"]
    assert gets[1]["if_range"] == '"' + md5(body) + '"'  # resumes only the same file
    assert report.downloaded_bytes == len(body)  # half, then the other half: nothing twice
    assert hashlib.md5((opts.cache_dir / "downloads" / "toy.zip").read_bytes()).hexdigest() == md5(body)
    assert any("interrupted" in m for m in logs)
    assert len(listing(opts.dest / "toy_HR")) == 7


def test_interrupted_download_resumes_in_a_later_run(tmp_path, http_server):
    body = make_zip({**TOY, "toy/HR/big.png": fake_image(7, 100_000)})
    url = http_server.add("/toy.zip", body, cut_after=40_000)
    reg = toy_registry(tmp_path, url, body)
    no_retry = HttpConfig(retries=0, backoff=0.01, timeout=10.0)
    with pytest.raises(NetworkError, match="interrupted.*rerun to resume") as exc:
        fetch_all(["toy"], options(tmp_path, reg, http=no_retry), log=lambda m: None)
    assert "toy:hr" in str(exc.value)
    part = tmp_path / "cache" / "downloads" / "toy.zip.part"
    assert part.stat().st_size == 40_000
    assert no_output(tmp_path / "raw")

    fetch_all(["toy"], options(tmp_path, reg, http=no_retry), log=lambda m: None)
    assert http_server.gets("/toy.zip")[-1]["range"] == "bytes=40000-"
    assert not part.exists() and len(listing(tmp_path / "raw" / "toy_HR")) == 4


def test_transient_server_errors_are_retried(tmp_path, http_server):
    body = make_zip(TOY)
    url = http_server.add("/toy.zip", body, fail_first=[503, 502])
    opts = options(tmp_path, toy_registry(tmp_path, url, body))
    fetch_all(["toy"], opts, log=lambda m: None)
    assert len(http_server.gets("/toy.zip")) == 3
    assert listing(opts.dest / "toy_HR") == TOY_HR


def test_wrong_checksum_is_refused_and_nothing_is_extracted(tmp_path, http_server):
    body = make_zip(TOY)
    url = http_server.add("/toy.zip", body)
    reg = toy_registry(tmp_path, url, body, checksum="0" * 32)
    opts = options(tmp_path, reg)
    with pytest.raises(ChecksumError) as exc:
        fetch_all(["toy"], opts, log=lambda m: None)
    msg = str(exc.value)
    assert "toy:hr" in msg and "checksum mismatch" in msg and str(reg) in msg and ".bad" in msg
    downloads = opts.cache_dir / "downloads"
    assert (downloads / "toy.zip.bad").read_bytes() == body  # kept aside for inspection
    assert not (downloads / "toy.zip").exists() and not (downloads / "toy.zip.part").exists()
    assert no_output(opts.dest)
    # a rerun does not pick the bad file up: it downloads again and refuses again
    with pytest.raises(ChecksumError):
        fetch_all(["toy"], opts, log=lambda m: None)
    assert len(http_server.gets("/toy.zip")) == 2


def test_size_announced_by_the_server_is_checked_first(tmp_path, http_server):
    body = make_zip(TOY)
    url = http_server.add("/toy.zip", body)
    opts = options(tmp_path, toy_registry(tmp_path, url, body, size=len(body) + 1))
    with pytest.raises(ChecksumError, match="serves .* bytes, expected"):
        fetch_all(["toy"], opts, log=lambda m: None)
    assert no_output(opts.dest)


@pytest.mark.parametrize(
    "kind, build, match",
    [
        ("zip-slip", lambda: make_zip({"toy/HR/ok.png": b"x", "toy/HR/../../../evil.png": b"x"}), r"'\.\.'"),
        ("tar-absolute", lambda: make_tar({"toy/HR/ok.png": b"x", "/tmp/evil.png": b"x"}), "absolute path"),
        (
            "tar-symlink",
            lambda: make_tar({"toy/HR/ok.png": b"x"}, {"toy/HR/link.png": ("../../../../etc/passwd", tarfile.SYMTYPE)}),
            "leaves the destination",
        ),
    ],
)
def test_unsafe_archives_are_rejected(tmp_path, http_server, kind, build, match):
    body = build()
    name = "toy.zip" if kind.startswith("zip") else "toy.tar"
    url = http_server.add(f"/{name}", body)
    opts = options(tmp_path, toy_registry(tmp_path, url, body, name=name))
    with pytest.raises(UnsafeArchiveError, match=match) as exc:
        fetch_all(["toy"], opts, log=lambda m: None)
    assert "rejected" in str(exc.value) and "toy:hr" in str(exc.value)
    assert no_output(opts.dest)
    assert not (tmp_path / "evil.png").exists() and not list(tmp_path.rglob("evil.png"))


def test_http_404_says_mirror_moved_and_where_to_fix(tmp_path, http_server):
    url = http_server.url + "/moved/toy.zip"
    reg = toy_registry(tmp_path, url, b"whatever")
    opts = options(tmp_path, reg)
    with pytest.raises(NotFoundError) as exc:
        fetch_all(["toy"], opts, log=lambda m: None)
    msg = str(exc.value)
    assert "HTTP 404" in msg and url in msg and "moved" in msg and str(reg) in msg and "toy:hr" in msg
    assert no_output(opts.dest)


def test_unreachable_host_is_a_clear_network_error(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/toy.zip"  # nothing listens there
    opts = options(tmp_path, toy_registry(tmp_path, url, b"x"), http=HttpConfig(retries=1, backoff=0.01, timeout=5.0))
    with pytest.raises(NetworkError, match="cannot reach .*connection refused") as exc:
        fetch_all(["toy"], opts, log=lambda m: None)
    assert "toy:hr" in str(exc.value)


def test_not_enough_disk_space_fails_before_downloading(tmp_path, http_server, monkeypatch):
    import shutil

    body = make_zip(TOY)
    url = http_server.add("/toy.zip", body)
    opts = options(tmp_path, toy_registry(tmp_path, url, body))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 10, 10))
    with pytest.raises(DiskFullError, match="ENOSPC") as exc:
        fetch_all(["toy"], opts, log=lambda m: None)
    assert "toy:hr" in str(exc.value) and "cache_dir" in str(exc.value)


def test_adding_a_source_downloads_only_the_new_archive(tmp_path, http_server):
    a, b = make_zip({"a/HR/1.png": b"1" * 500}), make_tar({"b/HR/2.png": b"2" * 500})
    reg = write_registry(
        tmp_path / "registry.yaml",
        {
            "a.zip": {"url": http_server.add("/a.zip", a), "md5": md5(a)},
            "b.tar": {"url": http_server.add("/b.tar", b), "md5": md5(b)},
        },
        {
            "a": {"parts": {"hr": {"archive": "a.zip", "member": "a/HR", "to": "A"}}},
            "b": {"parts": {"hr": {"archive": "b.tar", "member": "b/HR", "to": "B"}}},
        },
    )
    fetch_all(["a"], options(tmp_path, reg, dest=tmp_path / "run1"), log=lambda m: None)
    report = fetch_all(["a", "b"], options(tmp_path, reg, dest=tmp_path / "run2"), log=lambda m: None)
    assert [r["path"] for r in http_server.requests] == ["/a.zip", "/b.tar"]
    assert report.archives_from_cache == ["a.zip"] and report.downloaded_bytes == len(b)
    assert listing(tmp_path / "run2" / "A") == {"1.png"} and listing(tmp_path / "run2" / "B") == {"2.png"}


def test_manga109_from_a_user_url_with_checksum(tmp_path, http_server):
    body = make_zip(
        {
            "Manga109/images/AkkeraKanjinchou.png": b"m" * 300,
            "Manga109/images/Belmondo.png": b"n" * 300,
            "Manga109/readme.txt": b"terms",
        }
    )
    url = http_server.add("/private/Manga109.zip", body)
    reg = write_registry(
        tmp_path / "registry.yaml",
        {},
        {
            "bench": {"default": ["Manga109"], "parts": {"Manga109": {"user": "manga109", "to": "bench/Manga109/HR"}}},
        },
    )
    opts = options(tmp_path, reg, manga109=url, manga109_checksum=f"sha256:{sha256(body)}")
    fetch_all(["bench"], opts, log=lambda m: None)
    out = opts.dest / "bench" / "Manga109" / "HR"
    assert listing(out) == {"AkkeraKanjinchou.png", "Belmondo.png"}  # the shared folders are dropped
    files = json.loads((out / "manifest.json").read_text())["files"]
    assert sorted(f["file"] for f in files) == ["AkkeraKanjinchou.png", "Belmondo.png"]

    bad = options(tmp_path, reg, manga109=url, manga109_checksum="md5:" + "1" * 32, dest=tmp_path / "raw2")
    with pytest.raises(ChecksumError, match="fetch.manga109"):
        fetch_all(["bench"], bad, log=lambda m: None)


def test_cli_fetch_same_behaviour(tmp_path, http_server):
    from cajnn.cli import app

    body = make_zip(TOY)
    url = http_server.add("/toy.zip", body)
    reg = toy_registry(tmp_path, url, body)
    dest, cache = tmp_path / "out", tmp_path / "cache"
    runner = CliRunner()
    args = [
        "fetch",
        "toy",
        "sample",
        "--dest",
        str(dest),
        "--cache-dir",
        str(cache),
        "--registry",
        str(reg),
        "--no-progress",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert listing(dest / "toy_HR") == TOY_HR and (dest / "sample-train" / "astronaut.png").is_file()

    # adding to the folder keeps what is there; the summary lists both runs
    res = runner.invoke(
        app,
        [
            "fetch",
            "local:" + str(dest / "sample-holdout"),
            "--dest",
            str(dest),
            "--cache-dir",
            str(cache),
            "--registry",
            str(reg),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((dest / "manifest.json").read_text())
    assert {"toy_HR", "sample-train", "sample-holdout"} <= set(summary["datasets"])

    http_server.add("/toy.zip", b"gone", fail_first=[404])
    (cache / "downloads" / "toy.zip").unlink()
    res = runner.invoke(app, args)
    assert res.exit_code == 1
    assert "HTTP 404" in res.output and str(reg) in res.output
    assert listing(dest / "toy_HR") == TOY_HR  # the earlier dataset is untouched by the failure


def test_dvc_fetch_stage_is_a_no_op_and_adding_a_source_fetches_only_it(tmp_path, http_server):
    """A real `dvc repro fetch` in a copy of the repository, against the local HTTP server."""
    import yaml

    from tests.helpers.project import make_project, ran, run

    a, b = make_zip({"a/HR/1.png": b"1" * 500}), make_zip({"b/HR/2.png": b"2" * 500})
    reg = write_registry(
        tmp_path / "registry.yaml",
        {
            "a.zip": {"url": http_server.add("/a.zip", a), "md5": md5(a)},
            "b.zip": {"url": http_server.add("/b.zip", b), "md5": md5(b)},
        },
        {
            "a": {"parts": {"hr": {"archive": "a.zip", "member": "a/HR", "to": "A"}}},
            "b": {"parts": {"hr": {"archive": "b.zip", "member": "b/HR", "to": "B"}}},
        },
    )
    project = make_project(
        tmp_path, fetch={"sources": ["a"], "registry": str(reg), "cache_dir": str(tmp_path / "cache")}
    )
    assert ran(run(["dvc", "repro", "fetch"], project)) == ["fetch"]
    assert listing(project / "data" / "raw" / "A") == {"1.png"}
    assert ran(run(["dvc", "repro", "fetch"], project)) == []  # unchanged params: nothing runs

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["fetch"]["sources"] = ["a", "b"]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro", "fetch"], project)
    assert ran(out) == ["fetch"] and "1 archive(s) from the cache" in out
    assert [r["path"] for r in http_server.requests] == ["/a.zip", "/b.zip"]  # a.zip only once
    assert listing(project / "data" / "raw" / "A") == {"1.png"} and listing(project / "data" / "raw" / "B") == {"2.png"}
