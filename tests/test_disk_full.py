"""A disk that fills up (or is over quota, read-only, failing) while an eval saves its answers:
one clear error naming the file and the cause, the run recorded as failed with it, and nothing
half-written: a file replaced atomically is the old one or the new one, an appended line is
whole or absent."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import run_in_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evsys.files import StorageError, append_line, write_bytes_atomically

STORAGE_ERRNOS = [errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS]
ROWS = [{"id": f"q{i}", "prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(6)]
REAL_WRITE = os.write


@contextmanager
def disk_fills_up(code: int, after_bytes: int) -> Iterator[None]:
    """``os.write`` (the lowest write call) takes ``after_bytes`` more bytes, in part writes as
    a full disk does, then fails with ``code`` for good."""
    room = [after_bytes]

    def write(fd: int, data: bytes) -> int:
        if room[0] <= 0:
            raise OSError(code, os.strerror(code))
        taken = REAL_WRITE(fd, bytes(data)[: room[0]])
        room[0] -= taken
        return taken

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "write", write)
        yield


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    code=st.sampled_from(STORAGE_ERRNOS),
    before=st.lists(
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"") + b"\n"), max_size=3
    ),
    line=st.binary(min_size=1, max_size=200).map(lambda b: b.replace(b"\n", b"") + b"\n"),
    room=st.integers(min_value=0, max_value=199),
)
def test_an_appended_line_is_whole_or_absent(
    tmp_path: Path, code: int, before: list[bytes], line: bytes, room: int
) -> None:
    path = tmp_path / "answers.jsonl"
    path.write_bytes(b"".join(before))
    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    try:
        with disk_fills_up(code, room):
            if room >= len(line):
                append_line(fd, path, line)
                expected = b"".join(before) + line
            else:
                with pytest.raises(StorageError) as caught:
                    append_line(fd, path, line)
                assert str(path) in str(caught.value)
                assert errno.errorcode[code] in str(caught.value)
                assert caught.value.errno == code
                expected = b"".join(before)
    finally:
        os.close(fd)
    assert path.read_bytes() == expected


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    code=st.sampled_from(STORAGE_ERRNOS),
    old=st.none() | st.binary(max_size=50),
    new=st.binary(min_size=1, max_size=300),
    room=st.integers(min_value=0, max_value=299),
)
def test_a_file_replaced_atomically_is_the_old_one_or_the_new_one(
    tmp_path: Path, code: int, old: bytes | None, new: bytes, room: int
) -> None:
    folder = tmp_path / f"f{os.urandom(4).hex()}"
    folder.mkdir()
    path = folder / "predictions.jsonl"
    if old is not None:
        path.write_bytes(old)
    with disk_fills_up(code, room):
        if room >= len(new):
            write_bytes_atomically(path, new)
        else:
            with pytest.raises(StorageError, match=errno.errorcode[code]) as caught:
                write_bytes_atomically(path, new)
            assert str(caught.value).startswith(f"could not write {path}: ")
    if room >= len(new):
        assert path.read_bytes() == new
    elif old is None:
        assert not path.exists()
    else:
        assert path.read_bytes() == old
    assert [p.name for p in folder.iterdir()] == ([path.name] if path.exists() else [])


def test_other_write_failures_keep_their_own_type(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_bytes_atomically(tmp_path / "missing" / "x.json", b"{}")


def _eval(out: Path, dataset: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from evsys.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["eval", "model", "--dataset", str(dataset), "--output-dir", str(out)])
    return int(exited.value.code), capsys.readouterr().err


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(code=st.sampled_from(STORAGE_ERRNOS), room=st.integers(min_value=0, max_value=1500))
def test_eval_on_a_full_disk_stops_with_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], code: int, room: int
) -> None:
    dataset = tmp_path / "rows.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / f"out{os.urandom(4).hex()}"
    with disk_fills_up(code, room):
        status, err = _eval(out, dataset, capsys)
    if status == 0:  # there was room for everything: nothing to check but the outputs
        assert (out / "predictions.jsonl").exists()
        return
    assert status == 1
    assert "Traceback" not in err
    assert "could not write" in err and errno.errorcode[code] in err
    assert str(out) in err  # names the file, in the output directory
    # Every line that was written is whole; a file written atomically is all there or absent.
    for name in ("generations.jsonl", "predictions.jsonl"):
        if (out / name).exists():
            for line in (out / name).read_text().splitlines():
                json.loads(line)
    if (out / "summary.json").exists():
        json.loads((out / "summary.json").read_text())
    assert not list(out.glob(".*.tmp")) if out.exists() else True
    # With room again, the same command finishes, asking only for what was not saved.
    status, err = _eval(out, dataset, capsys)
    assert status == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_rows"] == len(ROWS) and summary["answered"] == len(ROWS)


def test_an_experiment_run_on_a_full_disk_is_recorded_failed_with_the_cause(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import evsys.run.evaluation as evaluation

    real = evaluation.write_jsonl_atomically

    def full_disk(path: Path, rows: object) -> None:
        with disk_fills_up(errno.ENOSPC, 10):
            real(path, rows)

    monkeypatch.setattr(evaluation, "write_jsonl_atomically", full_disk)
    outcome = run_in_process(["algorithm.params.max_steps=2"], workdir / "r")
    record = json.loads((workdir / "r" / "run_result.json").read_text())
    assert record["status"] == outcome.record["status"] == "failed"
    predictions = workdir / "r" / "predictions.jsonl"
    assert record["error"].startswith(f"StorageError: could not write {predictions}: no space")
    assert "(ENOSPC)" in record["error"]
    assert not predictions.exists()
    assert not outcome.bad_input


def test_a_real_full_tmpfs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same on a real file system with no room left (a 64 KiB tmpfs; needs root)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        dataset = tmp_path / "rows.jsonl"
        dataset.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:  # fill it up: the first answer has no room
            while os.write(fd, b"x" * 4096):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        status, err = _eval(mount / "out", dataset, capsys)
        assert status == 1 and "Traceback" not in err
        assert "could not write" in err and "(ENOSPC)" in err
        for line in (mount / "out" / "generations.jsonl").read_text().splitlines():
            json.loads(line)
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("code", STORAGE_ERRNOS)
def test_a_run_whose_record_cannot_be_written_is_failed_with_the_cause(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """The run ends, then its run_result.json finds no room: the caller is told it failed and
    why, nothing is raised out of run_arm, and the file still says the arm never finished (so
    `evsys resume` runs it again), not half a record."""
    import evsys.run.runner as runner

    real = runner.write_json_atomically

    def full_disk(path: Path, payload: object) -> None:
        with disk_fills_up(code, 100):
            real(path, payload)

    monkeypatch.setattr(runner, "write_json_atomically", full_disk)
    outcome = run_in_process(["algorithm.params.max_steps=2"], workdir / "r")
    assert outcome.result.status == outcome.record["status"] == "failed"
    error = outcome.record["error"]
    assert error.startswith(f"StorageError: could not write {workdir / 'r' / 'run_result.json'}")
    assert f"({errno.errorcode[code]})" in error and error.endswith("the run had ended completed")
    on_disk = json.loads((workdir / "r" / "run_result.json").read_text())
    assert on_disk["status"] == "running" and on_disk["finished"] is False
    assert not outcome.bad_input
