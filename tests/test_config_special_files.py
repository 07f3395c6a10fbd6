"""The config size cap holds for files whose stat size says nothing: pipes (``-c <(...)``),
devices (``/dev/zero``) and FIFOs are read up to the cap + 1 byte, never to their end."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from xalign.config import MAX_CONFIG_BYTES, load_config
from xalign.errors import ConfigError


def refused_within(path: Path, seconds: float = 10) -> str:
    """The ConfigError message of ``load_config(path)``, failing (not hanging) after ``seconds``."""
    result: dict[str, BaseException | None] = {}

    def target() -> None:
        try:
            load_config(path)
            result["error"] = None
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"load_config({path}) hung"
    assert isinstance(result["error"], ConfigError), result["error"]
    return str(result["error"])


def pipe_path(payload: bytes) -> tuple[Path, threading.Thread]:
    """A ``/dev/fd/N`` path whose pipe a thread fills with ``payload`` (like bash ``<(...)``)."""
    read, write = os.pipe()

    def writer() -> None:
        try:
            os.write(write, payload) if len(payload) < 65536 else _write_all(write, payload)
        except OSError:
            pass  # the reader closed early: the point of the cap
        finally:
            os.close(write)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    return Path(f"/dev/fd/{read}"), thread


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view[:65536]) :]


@pytest.mark.parametrize("size", [MAX_CONFIG_BYTES + 1, 3 * MAX_CONFIG_BYTES, 20_000_000])
def test_a_big_pipe_is_refused_at_the_cap(size):
    path, thread = pipe_path(b"#" + b"x" * (size - 2) + b"\n")
    message = refused_within(path)
    assert message.startswith(f"{path}: config file (not a regular file) of more than"), message
    assert f"{MAX_CONFIG_BYTES:,}" in message and "data.corpus" in message
    thread.join(10)


def test_a_small_pipe_is_read_as_a_config():
    path, thread = pipe_path(b"train: {lr: 0.25}\n")
    assert load_config(path).train.lr == 0.25
    thread.join(10)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_an_endless_device_is_refused_at_the_cap(device):
    if not Path(device).exists():
        pytest.skip(f"no {device}")
    message = refused_within(Path(device))
    assert message.startswith(f"{device}: config file (not a regular file) of more than")


def test_a_fifo_nobody_writes_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "c.yaml"
    os.mkfifo(fifo)
    message = refused_within(fifo, 5)
    assert message == f"{fifo}: FIFO/pipe gave no data (nothing wrote to it); expected a config"


def test_dev_null_and_a_directory_are_refused(tmp_path):
    assert "device or special file gave no data" in refused_within(Path("/dev/null"))
    assert refused_within(tmp_path) == f"{tmp_path}: is a directory, not a config file"


def test_a_regular_file_at_and_over_the_cap(tmp_path):
    at = tmp_path / "at.yaml"
    at.write_bytes(b"train: {lr: 0.5}\n#" + b"x" * (MAX_CONFIG_BYTES - 19) + b"\n")
    assert at.stat().st_size == MAX_CONFIG_BYTES and load_config(at).train.lr == 0.5
    over = tmp_path / "over.yaml"
    over.write_bytes(at.read_bytes() + b"#")
    size = MAX_CONFIG_BYTES + 1
    assert refused_within(over).startswith(f"{over}: config file of {size:,} bytes is larger")
