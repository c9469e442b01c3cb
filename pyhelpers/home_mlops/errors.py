"""User-facing errors and the exit codes the Groovy steps rely on.

Every error a user can cause or fix is a ``HomeMlopsError``: the CLI prints
its three parts (what was wrong, what was expected, what to do) and exits with
its code. Anything else is a bug and exits 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    BAD_INPUT = 2
    NOT_FOUND = 3
    BUILD_FAILED = 4
    PUSH_FAILED = 5
    DEPLOY_FAILED = 6  # the previous deployment was kept (rolled back)
    UNAVAILABLE = 7  # a service we need (tracking server, bucket, Docker) did not answer


@dataclass
class HomeMlopsError(Exception):
    what: str
    expected: str = ""
    hint: str = ""
    code: ExitCode = ExitCode.INTERNAL
    # The failing tool's last output lines (docker build, pip, BentoML, a container's log), already
    # scrubbed: printed with the error when the message does not hold them, and in the --json result.
    log_tail: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [self.what]
        if self.expected:
            parts.append(f"expected: {self.expected}")
        if self.hint:
            parts.append(f"what to do: {self.hint}")
        return "\n  ".join(parts)


class _Kind(HomeMlopsError):
    """A kind of user error with a fixed exit code; a real class, so `except NotFound:` works."""

    CODE = ExitCode.INTERNAL

    def __init__(self, what: str, expected: str = "", hint: str = "", log_tail: list[str] | None = None) -> None:
        super().__init__(what, expected, hint, self.CODE, list(log_tail or []))


class BadInput(_Kind):
    CODE = ExitCode.BAD_INPUT


class NotFound(_Kind):
    CODE = ExitCode.NOT_FOUND


class BuildFailed(_Kind):
    CODE = ExitCode.BUILD_FAILED


class PushFailed(_Kind):
    CODE = ExitCode.PUSH_FAILED


class DeployFailed(_Kind):
    CODE = ExitCode.DEPLOY_FAILED


class Unavailable(_Kind):
    CODE = ExitCode.UNAVAILABLE
