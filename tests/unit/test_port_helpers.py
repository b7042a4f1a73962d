"""The test suite's port helpers (tests/conftest.py): a server started on a port another process took in the
meantime is started again on another port, and any other failure is reported at once."""

import socket
import sys

import pytest


def test_free_port_is_bindable(free_port):
    with socket.socket() as s:
        s.bind(("127.0.0.1", free_port))


def test_a_port_taken_meanwhile_is_retried_on_another(start_on_free_port):
    ports = []

    def start(port):
        ports.append(port)
        if len(ports) == 1:
            raise OSError(98, "Address already in use")
        return "server"

    assert start_on_free_port(start) == ("server", ports[-1])
    assert len(ports) == 2


def test_a_really_busy_port_is_retried_then_reported(start_on_free_port):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()

        def start(port):  # as if every free port were taken by the time we bind it
            with socket.socket() as s:
                s.bind(("127.0.0.1", taken.getsockname()[1]))

        with pytest.raises(OSError, match="in use"):
            start_on_free_port(start, attempts=2)


def test_other_start_errors_are_not_retried(start_on_free_port):
    calls = []

    def start(port):
        calls.append(port)
        raise OSError("permission denied")

    with pytest.raises(OSError, match="permission denied"):
        start_on_free_port(start)
    assert len(calls) == 1


def test_a_launcher_that_lost_its_port_runs_again(run_on_free_port, tmp_path):
    """The command fails with a port collision on its first run only (a file marks the first run)."""
    mark = tmp_path / "ran"
    code = (
        "import pathlib, sys; m = pathlib.Path(sys.argv[1]); first = not m.exists(); m.touch(); "
        "sys.exit('RuntimeError: The server socket has failed to listen: address already in use' if first else 0)"
    )
    seen = []

    def command(port):
        seen.append(port)
        return [sys.executable, "-c", code, str(mark)]

    assert run_on_free_port(command).returncode == 0 and len(seen) == 2
    fails = [sys.executable, "-c", "import sys; sys.exit('some other error')"]
    proc = run_on_free_port(lambda port: fails)
    assert proc.returncode == 1 and "some other error" in proc.stderr
