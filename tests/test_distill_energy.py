"""codecarbon's offline tracker: measures without any network access; NaN when it fails."""

from __future__ import annotations

import builtins
import math
import socket

import pytest

from salnas.distill.energy import track_energy


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to open a connection or resolve a name is recorded and refused."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_codecarbon_runs_offline(no_network, tmp_path, monkeypatch):
    pytest.importorskip("codecarbon")
    monkeypatch.chdir(tmp_path)  # anything it might write would land here
    with track_energy("USA", measure_power_secs=1) as energy:
        sum(i * i for i in range(200_000))
    assert no_network == []
    assert energy.tracker == "codecarbon-offline"
    assert energy.kwh >= 0 and energy.co2_kg >= 0 and energy.duration_s > 0
    assert not list(tmp_path.iterdir())  # save_to_file=False: no emissions.csv


def test_missing_or_failing_codecarbon_gives_nan_with_a_warning(monkeypatch):
    real_import = builtins.__import__

    def no_codecarbon(name, *args, **kwargs):
        if name.startswith("codecarbon"):
            raise ImportError("No module named 'codecarbon'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_codecarbon)
    with pytest.warns(UserWarning, match="energy not measured"), track_energy() as energy:
        pass
    assert math.isnan(energy.kwh) and math.isnan(energy.co2_kg) and energy.duration_s >= 0
    monkeypatch.setattr(builtins, "__import__", real_import)
    with track_energy(enabled=False) as off:
        pass
    assert math.isnan(off.kwh) and off.tracker == "none"
