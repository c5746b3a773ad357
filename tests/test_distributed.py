"""One run across two processes on JAX's own runtime (gloo collectives on localhost), as a
cluster would start it: the same command in each process, coordinator, count and id given."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from sublim_toy.cli import RUN_FILES, main

TINY = ["--seeds", "4", "--epochs", "1", "--set", "hidden=32", "--noise-images", "4096"]
TINY += ["--probe-every", "2"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(process_id: int, port: int, out, cache, *extra, stderr=subprocess.PIPE):
    """One process of a two-process run with two CPU devices each (four in all)."""
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "SUBLIM_TOY_CACHE": str(cache),
    }
    command = [sys.executable, "-m", "sublim_toy", "reproduce", *TINY, "--out", str(out)]
    command += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    command += ["--process-id", str(process_id), *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=stderr)


def test_two_processes_give_the_numbers_of_one_process_on_as_many_devices(mnist_cache, tmp_path):
    port, out = _free_port(), tmp_path / "two"
    processes = [_start(i, port, out, mnist_cache, "--no-progress") for i in (0, 1)]
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()[-2000:]
    stdout = [text.decode() for text, _ in outputs]
    assert "Student (aux. only)" in stdout[0] and stdout[1] == ""  # printed once
    # one set of files, written by process 0 alone
    assert sorted(path.name for path in out.iterdir()) == sorted(RUN_FILES)
    two = json.loads((out / "results.json").read_text())

    # the same config in one process with four devices: the same program on every device
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    env["SUBLIM_TOY_CACHE"] = str(mnist_cache)
    one = tmp_path / "one"
    command = [sys.executable, "-m", "sublim_toy", "reproduce", *TINY, "--no-progress"]
    command += ["--out", str(one)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    single = json.loads((one / "results.json").read_text())
    assert two["devices_used"] == single["devices_used"] == 4
    for key in ("accuracy", "alignment", "first_order", "start", "summary"):
        assert two[key] == single[key], key


def test_a_process_that_dies_stops_the_others_with_an_error(mnist_cache, tmp_path):
    port, out = _free_port(), tmp_path / "run"
    # hours of student epochs: still training when one process dies, on any machine
    longer = ["--set", "student_epochs=5000"]
    log = tmp_path / "process-0.err"
    with log.open("wb") as stderr:
        processes = [_start(0, port, out, mnist_cache, *longer, stderr=stderr)]
        processes.append(_start(1, port, out, mnist_cache, *longer, "--no-progress"))
    try:
        # both have joined and are training once process 0's bar shows a student epoch's loss
        deadline = time.monotonic() + 300
        while "aux-student loss" not in log.read_text(errors="replace"):
            assert processes[0].poll() is None, log.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "no student epoch within 300 s"
            time.sleep(0.5)
        processes[1].send_signal(signal.SIGKILL)
        # a heartbeat (distributed.HEARTBEAT_S) or a collective timeout stops it well within this
        processes[0].wait(timeout=150)
    finally:
        for process in processes:
            process.kill()
    assert processes[0].returncode != 0
    # JAX's coordination service says why, or our one line does when a collective failed first
    text = log.read_text(errors="replace")
    assert "another task died" in text or "the run across processes failed" in text, text[-3000:]
    assert not (out / "results.json").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--coordinator", "127.0.0.1:1234"], "--coordinator, --num-processes and --process-id go"),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"], "must be in 0..1"),
        (["--coordinator", "h:1", "--num-processes", "two", "--process-id", "0"], "an integer"),
    ],
)
def test_bad_process_flags_are_one_line(arguments, message, tmp_path, capsys):
    code = main(["reproduce", "--out", str(tmp_path / "o"), *arguments])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
