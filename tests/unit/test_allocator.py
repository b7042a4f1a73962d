"""`keep_freed_memory`: glibc's mmap and trim thresholds raised for the `workbench` command and the app, a
user's own MALLOC_* setting left alone."""

import ctypes

import pytest

from workbench import allocator


def test_sets_both_thresholds_on_glibc(monkeypatch):
    if allocator._glibc() is None:
        pytest.skip("not glibc: nothing to set")
    for name in allocator._SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert allocator.keep_freed_memory() == {"MALLOC_MMAP_THRESHOLD_": True, "MALLOC_TRIM_THRESHOLD_": True}


def test_calls_mallopt_with_glibcs_parameters_and_leaves_a_users_setting(monkeypatch):
    calls = []

    class FakeGlibc:
        gnu_get_libc_version = object()

        def mallopt(self, param, value):
            calls.append((param, value.value if isinstance(value, ctypes.c_int) else value))
            return 1

    monkeypatch.setattr(allocator, "_glibc", lambda: FakeGlibc())
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000")
    assert allocator.keep_freed_memory() == {"MALLOC_MMAP_THRESHOLD_": True, "MALLOC_TRIM_THRESHOLD_": False}
    assert calls == [(-3, 32 * 1024 * 1024)]  # M_MMAP_THRESHOLD, the largest value glibc accepts on 64-bit


def test_a_rejected_setting_is_reported_false(monkeypatch):
    class Refusing:
        gnu_get_libc_version = object()

        def mallopt(self, param, value):
            return 0

    monkeypatch.setattr(allocator, "_glibc", lambda: Refusing())
    for name in allocator._SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert allocator.keep_freed_memory() == {"MALLOC_MMAP_THRESHOLD_": False, "MALLOC_TRIM_THRESHOLD_": False}


def test_off_glibc_nothing_is_set(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.keep_freed_memory() == {}


def test_the_command_line_calls_it_before_the_command_runs(monkeypatch, tmp_path):
    from workbench import cli

    called = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: called.append(True))
    with pytest.raises(SystemExit):
        cli.main(["explain", "--help"])
    assert not called  # --help exits while parsing, before any work
    assert cli.main(["eval", str(tmp_path / "no-such-checkpoint")]) == 2  # a clear error, after the call
    assert called == [True]
