"""Safe extraction: what is rejected, what is kept, what is recorded."""

from __future__ import annotations

import errno
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from cajnn.fetch import DiskFullError, UnsafeArchiveError
from cajnn.fetch.archives import extract, safe_name
from tests.helpers.file_server import make_tar as tar_bytes


def zip_bytes(entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return buf.getvalue()


def put(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["/etc/x.png", "C:/x.png", "a/../../x.png", "..\\x.png", "a\\..\\..\\x.png"])
def test_safe_name_rejects(name):
    with pytest.raises(UnsafeArchiveError):
        safe_name(name, Path("a.zip"), "t")


def test_safe_name_normalises():
    assert safe_name("./a//b/./c.png", Path("a.zip"), "t") == "a/b/c.png"


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
def test_keeps_only_images_of_the_selected_folder(tmp_path, kind):
    entries = {
        "d/HR/1.png": b"1",
        "d/HR/s/2.JPG": b"22",
        "d/HR/notes.txt": b"t",
        "d/LR/1.png": b"x",
        "d/HR/__MACOSX/._1.png": b"m",
        "d/HR/._3.png": b"m",
    }
    data = zip_bytes(entries) if kind == "zip" else tar_bytes(entries, mode="w:gz" if kind == "tar.gz" else "w")
    archive = put(tmp_path, f"a.{kind}", data)
    res = extract(archive, {"d/HR": tmp_path / "out"}, label="t", progress=False)["d/HR"]
    assert files_under(tmp_path / "out") == {"1.png", "s/2.JPG"}
    assert sorted(r["file"] for r in res.kept) == ["1.png", "s/2.JPG"]
    assert {s["member"]: s["reason"] for s in res.skipped} == {
        "d/HR/notes.txt": "not an image file",
        "d/HR/__MACOSX/._1.png": "macOS metadata",
        "d/HR/._3.png": "macOS metadata",
    }


@pytest.mark.parametrize(
    "data, match",
    [
        (lambda: zip_bytes({"ok.png": b"1", "../evil.png": b"x"}), "'..'"),
        (lambda: zip_bytes({"ok.png": b"1", "/abs/evil.png": b"x"}), "absolute"),
        (lambda: zip_bytes({"ok.png": b"1"}, {"l.png": "../../outside.png"}), "leaves the destination"),
        (lambda: zip_bytes({"ok.png": b"1"}, {"l.png": "/etc/passwd"}), "leaves the destination"),
        (lambda: tar_bytes({"ok.png": b"1", "a/../../evil.png": b"x"}), "'..'"),
        (lambda: tar_bytes({"ok.png": b"1", "/abs/evil.png": b"x"}), "absolute"),
        (lambda: tar_bytes({"ok.png": b"1"}, {"d/l.png": ("../../x", tarfile.SYMTYPE)}), "leaves the destination"),
        (lambda: tar_bytes({"ok.png": b"1"}, {"d/l.png": ("/etc/passwd", tarfile.SYMTYPE)}), "leaves the destination"),
        (lambda: tar_bytes({"ok.png": b"1"}, {"h.png": ("../x.png", tarfile.LNKTYPE)}), "leaves the destination"),
    ],
)
def test_unsafe_entries_reject_the_whole_archive(tmp_path, data, match):
    raw = data()
    archive = put(tmp_path, "a.bin", raw)
    with pytest.raises(UnsafeArchiveError, match=match):
        extract(archive, {"": tmp_path / "out"}, label="t", progress=False)
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "outside.png").exists()


def test_links_inside_the_archive_are_skipped_not_followed(tmp_path):
    archive = put(tmp_path, "a.tar", tar_bytes({"d/1.png": b"1"}, {"d/l.png": ("1.png", tarfile.SYMTYPE)}))
    res = extract(archive, {"d": tmp_path / "out"}, label="t", progress=False)["d"]
    assert files_under(tmp_path / "out") == {"1.png"}
    assert not (tmp_path / "out" / "l.png").is_symlink()
    assert res.skipped == [{"member": "d/l.png", "reason": "link or special file, not kept"}]
    zarchive = put(tmp_path, "a.zip", zip_bytes({"d/1.png": b"1"}, {"d/l.png": "1.png"}))
    res = extract(zarchive, {"d": tmp_path / "zout"}, label="t", progress=False)["d"]
    assert files_under(tmp_path / "zout") == {"1.png"} and res.skipped[0]["reason"].startswith("symbolic link")


def test_disk_full_while_extracting_is_a_clear_error(tmp_path, monkeypatch):
    import cajnn.fetch.archives as archives

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(archives, "_copy_hashed", full)
    archive = put(tmp_path, "a.zip", zip_bytes({"1.png": b"1"}))
    with pytest.raises(DiskFullError, match="disk full.*fetch.dest"):
        extract(archive, {"": tmp_path / "out"}, label="div2k:train", progress=False)


def test_not_an_archive(tmp_path):
    from cajnn.fetch import FetchError

    with pytest.raises(FetchError, match="neither a zip, a tar nor a Debian package"):
        extract(put(tmp_path, "a.zip", b"hello" * 100), {"": tmp_path / "out"}, label="t", progress=False)


def deb_bytes(members: dict[str, bytes]) -> bytes:
    """A Debian package: an `ar` archive (deb(5)) of the given members, odd sizes padded."""
    out = [b"!<arch>\n"]
    for name, data in members.items():
        out.append(f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode())
        out.append(data + (b"\n" if len(data) % 2 else b""))
    return b"".join(out)


def test_debian_package_is_read_as_its_data_tar(tmp_path):
    data = tar_bytes(
        {
            "./usr/share/bg/nature/a.jpg": b"1",
            "./usr/share/bg/nature/b.png": b"22",
            "./usr/share/bg/abstract/c.png": b"3",
            "./usr/share/doc/copyright": b"c",
        },
        mode="w:xz",
    )
    deb = put(
        tmp_path, "p_1.0_all.deb", deb_bytes({"debian-binary": b"2.0\n", "control.tar.xz": b"odd", "data.tar.xz": data})
    )
    res = extract(deb, {"usr/share/bg/nature": tmp_path / "out"}, label="t", progress=False)
    assert files_under(tmp_path / "out") == {"a.jpg", "b.png"}
    assert sorted(r["file"] for r in res["usr/share/bg/nature"].kept) == ["a.jpg", "b.png"]
    unsafe = put(
        tmp_path,
        "bad.deb",
        deb_bytes({"debian-binary": b"2.0\n", "data.tar.xz": tar_bytes({"../../evil.png": b"x"}, mode="w:xz")}),
    )
    with pytest.raises(UnsafeArchiveError, match="contains '..'"):
        extract(unsafe, {"": tmp_path / "out2"}, label="t", progress=False)
    from cajnn.fetch import FetchError

    no_data = put(tmp_path, "nodata.deb", deb_bytes({"debian-binary": b"2.0\n"}))
    with pytest.raises(FetchError, match="has no data.tar member"):
        extract(no_data, {"": tmp_path / "out3"}, label="t", progress=False)
