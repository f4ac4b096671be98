"""cajnn.atomic: whole files and folders or nothing, ordinary permissions, no temp files left behind."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest

from cajnn.atomic import atomic_dir, write_atomic, write_bytes_atomic, write_json_atomic, write_text_atomic


def _umask(mask: int):
    old = os.umask(mask)
    return lambda: os.umask(old)


def test_writes_content_and_creates_the_folder(tmp_path):
    target = tmp_path / "a" / "b" / "f.bin"
    write_bytes_atomic(target, b"\x00\x01payload")
    assert target.read_bytes() == b"\x00\x01payload"
    write_text_atomic(target, "é\r\nline\n")  # UTF-8, no newline translation
    assert target.read_bytes() == "é\r\nline\n".encode()
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]


@pytest.mark.parametrize("fsync", [False, True])
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_permissions_follow_the_umask(tmp_path, umask, mode, fsync):
    restore = _umask(umask)
    try:
        write_atomic(tmp_path / "f", lambda fh: fh.write(b"x"), fsync=fsync)
    finally:
        restore()
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == mode


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temp(tmp_path, exc):
    target = tmp_path / "f.json"
    target.write_text("old")

    def half_then_fail(fh):
        fh.write(b"half a fi")
        raise exc("boom")

    with pytest.raises(exc, match="boom"):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_a_failing_writer_creates_nothing(tmp_path):
    with pytest.raises(ValueError):
        write_atomic(tmp_path / "new", lambda fh: (_ for _ in ()).throw(ValueError("no")))
    assert list(tmp_path.iterdir()) == []


def test_concurrent_writers_never_interleave(tmp_path):
    """Each thread writes its own large, uniform file in many small chunks; whatever the order,
    every read sees exactly one writer's whole file."""
    target = tmp_path / "shared.bin"
    size, chunk = 1 << 18, 1 << 10
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            start.wait()
            for _ in range(3):
                write_atomic(target, lambda fh: [fh.write(bytes([k]) * chunk) for _ in range(size // chunk)])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    seen = []
    while any(t.is_alive() for t in threads):
        if target.exists():
            data = target.read_bytes()
            seen.append(len(data) == size and data == data[:1] * size)
    for t in threads:
        t.join()
    assert not errors
    data = target.read_bytes()
    assert len(data) == size and data == data[:1] * size
    assert all(seen)
    assert [p.name for p in tmp_path.iterdir()] == ["shared.bin"]


def test_json_formats(tmp_path):
    data = {"b": 1, "a": [1, 2], "é": "ü"}
    write_json_atomic(tmp_path / "sorted.json", data)
    assert (tmp_path / "sorted.json").read_text() == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert (tmp_path / "sorted.json").read_text().startswith('{\n  "a": [\n')
    write_json_atomic(tmp_path / "ordered.json", data, sort_keys=False)
    assert (tmp_path / "ordered.json").read_text() == json.dumps(data, indent=2) + "\n"
    assert json.loads((tmp_path / "ordered.json").read_text()) == data
    assert list(json.loads((tmp_path / "ordered.json").read_text())) == ["b", "a", "é"]


def test_atomic_dir_swaps_a_complete_folder_in_and_replaces_the_old_one(tmp_path):
    final = tmp_path / "out"
    (final / "old").mkdir(parents=True)
    with atomic_dir(final) as partial:
        assert partial == tmp_path / ".out.partial" and not any(partial.iterdir())
        (partial / "new.txt").write_text("new")
        assert (final / "old").is_dir()  # the old output stays readable while the new one is built
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old folder, set aside, is gone


def test_atomic_dir_sets_the_old_folder_aside_before_swapping(tmp_path, monkeypatch):
    """The old output is renamed, not removed, before the new one goes in: a failed swap restores it."""
    final = tmp_path / "out"
    final.mkdir()
    (final / "kept.txt").write_text("kept")
    real_replace = os.replace

    def replace(src, dst):
        if str(src).endswith(".partial"):
            raise OSError("swap failed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="swap failed"), atomic_dir(final) as partial:
        (partial / "new.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["kept.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_dir_keeps_the_old_folder_when_building_fails(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "kept.txt").write_text("kept")
    with pytest.raises(KeyboardInterrupt), atomic_dir(final) as partial:
        (partial / "half.txt").write_text("half")
        raise KeyboardInterrupt
    assert sorted(p.name for p in final.iterdir()) == ["kept.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("leftover", [".out.partial", ".out.old"])
def test_atomic_dir_clears_what_a_killed_run_left(tmp_path, leftover):
    stale = tmp_path / "a" / leftover
    stale.mkdir(parents=True)
    (stale / "stale.txt").write_text("from a killed run")
    with atomic_dir(tmp_path / "a" / "out") as partial:
        assert not any(partial.iterdir())
        (partial / "f").write_text("x")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["out"]


def test_atomic_dir_restores_an_output_a_killed_swap_left_aside(tmp_path):
    (tmp_path / ".out.old").mkdir()
    (tmp_path / ".out.old" / "kept.txt").write_text("kept")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "out"):
        raise RuntimeError("this run fails too")
    assert (tmp_path / "out" / "kept.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
