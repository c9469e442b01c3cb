"""The deploy's signal guard, no Docker daemon: a SIGTERM that lands inside a best-effort probe
(whose ``except Exception`` swallows it) must still end the deploy as an interruption.

This was a real race (CI, SIGTERM during ``container.reload()``): the probe read the swallowed
interrupt as "container gone" and the deploy reported "stopped before it was ready (state gone)".
"""
from __future__ import annotations

import os
import signal

import pytest

from home_mlops.deploy import probe
from home_mlops.deploy.switch import DeployInterrupted, _interruptible


class _ReloadGetsTheSignal:
    """A container whose reload() is where the signal arrives (as a docker API call would be)."""

    name = "hm-test-interrupt"

    def reload(self):
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to this (main) thread before kill returns

    def logs(self, tail=15):
        return b""


def test_a_signal_swallowed_by_a_probe_is_raised_again_by_check():
    with _interruptible() as guard:
        status, _ = probe.container_state(_ReloadGetsTheSignal())
        assert status == "gone"  # the probe swallowed it: exactly the race
        assert guard.interrupted_by == "SIGTERM"
        with pytest.raises(DeployInterrupted, match="interrupted by SIGTERM"):
            guard.check()


def test_a_second_signal_during_cleanup_is_only_noted():
    with _interruptible() as guard:
        with pytest.raises(DeployInterrupted):
            os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)  # the cleanup runs now: noted, not raised
        assert guard.noted == ["SIGTERM"]
        assert guard.interrupted_by == "SIGINT"


def test_no_signal_no_interruption():
    with _interruptible() as guard:
        guard.check()
        assert guard.interrupted_by is None
