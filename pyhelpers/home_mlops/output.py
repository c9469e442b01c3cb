"""How human output is shown: rich on a terminal, plain timestamped lines without one, or JSON lines.

Most runs happen in a Jenkins console: no terminal, so a progress bar would draw
once at the end and tool output kept in memory would never be seen. Without a
terminal every step, every Docker build step and every line of pip/Docker output
is printed as it comes, one timestamped line each, prefixed by the stage.
``--log-format json`` prints one JSON object per line (time, level, stage,
message, fields) for log collectors. Everything goes to stderr (stdout is kept
for ``--json -``), every value is printed literally, and every line passes
through the one scrubber (redact.scrub) with the secrets of this
environment, so a registry password never reaches a log.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

from home_mlops.redact import scrub, secret_values

MODES = ("rich", "plain", "json")
# ANSI escape sequences and the other control characters a tool may print (progress bars, colours).
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x1f\x7f]")


@dataclass
class OutputSettings:
    mode: str = "rich"
    level: str = "normal"
    stage: str = ""
    failed_stage: str = ""  # the innermost stage an error left: the summary names it


_settings = OutputSettings()


def choose_mode(log_format: str | None, is_terminal: bool) -> str:
    """``--log-format`` wins; otherwise rich on a terminal, plain lines without one."""
    if log_format:
        return log_format
    return "rich" if is_terminal else "plain"


def configure(*, log_format: str | None = None, quiet: bool = False, verbose: bool = False) -> OutputSettings:
    from home_mlops.errors import BadInput

    if log_format and log_format not in MODES:
        raise BadInput(f"--log-format {log_format!r} is not a log format", "plain, json or rich",
                       "leave it out to get rich output on a terminal and plain lines without one")
    if quiet and verbose:
        raise BadInput("--quiet and --verbose were both given", "at most one of them", "drop one")
    _settings.mode = choose_mode(log_format, sys.stderr.isatty())
    _settings.level = "quiet" if quiet else "verbose" if verbose else "normal"
    if _settings.mode != "rich":  # a library's Python warning is a stamped line too, not a stray one
        logging.captureWarnings(True)
        warnings_logger = logging.getLogger("py.warnings")
        warnings_logger.handlers, warnings_logger.propagate = [_ToolLogHandler("python")], False
    return _settings


def settings() -> OutputSettings:
    return _settings


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Lines printed inside carry this stage name (a command, or a stage of `pipeline`)."""
    before = _settings.stage
    _settings.stage = name
    try:
        yield
    except BaseException:
        _settings.failed_stage = _settings.failed_stage or name
        raise
    finally:
        _settings.stage = before


def failed_stage() -> str:
    return _settings.failed_stage


def clean(text: str) -> str:
    """One line as it may be logged: secrets scrubbed, no control characters."""
    return _ESCAPES.sub("", scrub(str(text), secret_values()))


def clean_lines(text: str, last: int | None = None) -> list[str]:
    lines = [clean(line).rstrip() for line in str(text).replace("\r", "\n").splitlines()]
    lines = [line for line in lines if line.strip()]
    return lines[-last:] if last else lines


def shown(level: str) -> bool:
    """quiet shows warnings, errors and the summary; verbose adds tool output on a terminal too."""
    if _settings.level == "quiet":
        return level in ("warning", "error", "summary")
    if level == "output":
        return _settings.mode != "rich" or _settings.level == "verbose"
    return True


def _timestamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_plain(level: str, prefix: str, message: str, fields: dict[str, Any] | None = None) -> None:
    """Plain or JSON lines (never rich): one line per message line, each stamped and cleaned."""
    stage_name = _settings.stage or "home-mlops"
    for text in clean_lines(message) or [""]:
        if _settings.mode == "json":
            record = {"time": _timestamp(), "level": level, "stage": stage_name, "message": text,
                      "fields": {k: clean(v) for k, v in (fields or {}).items()}}
            sys.stderr.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            head = f"{prefix} " if prefix else ""
            sys.stderr.write(f"{_timestamp()} [{stage_name}] {head}{text}\n")
    sys.stderr.flush()


def tool_line(source: str, line: str) -> None:
    """A line of a tool's own output (docker build, pip), printed as it comes."""
    if not shown("output"):
        return
    if _settings.mode == "rich":
        from home_mlops import console

        console.info(f"  {source} | {clean(line)}")
        return
    write_plain("output", f"{source} |", line, {"source": source})


def aligned(columns: tuple[str, ...], cells: list[list[str]]) -> list[str]:
    """A header line and one line per row, columns padded to their widest cell and never cut
    to a terminal's width (Jenkins logs have none)."""
    widths = [max(len(line[i]) for line in [list(columns), *cells]) for i in range(len(columns))]
    return ["  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip() for values in [list(columns), *cells]]


def clean_message(message: object) -> str:
    """A multi-line message for the terminal: each line cleaned, the line breaks kept."""
    return "\n".join(clean(line) for line in str(message).splitlines())


class StepProgress:
    """A progress bar over numbered steps on a terminal; nothing without one (the step lines are the progress)."""

    def __init__(self, description: str) -> None:
        self.description = description
        self._progress = None
        self._task = None

    def __enter__(self) -> "StepProgress":
        if _settings.mode == "rich" and _settings.level != "quiet":
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            from home_mlops.console import console

            self._progress = Progress(
                TextColumn("{task.description}", style="cyan", markup=False), BarColumn(),
                TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=console, transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=None)
        return self

    def update(self, completed: int, total: int, description: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, total=total, description=description)

    def done(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self._progress.tasks[0].total or 1)

    def __exit__(self, *exc_info) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc_info)


class _ToolLogHandler(logging.Handler):
    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tool_line(self.source, record.getMessage())
        except Exception:  # noqa: BLE001 - logging must never break the build
            self.handleError(record)


@contextmanager
def tool_logs(logger_name: str, source: str) -> Iterator[None]:
    """A library's log records (BentoML's) become tool lines while inside: stamped, cleaned, by stage,
    instead of going to stderr on their own through the library's handlers."""
    logger = logging.getLogger(logger_name)
    saved = (logger.handlers[:], logger.propagate)
    logger.handlers, logger.propagate = [_ToolLogHandler(source)], False
    try:
        yield
    finally:
        logger.handlers, logger.propagate = saved


class ToolPipe:
    """A pipe to give a subprocess as stdout or stderr: each line is printed as it comes
    (tool_line) and kept; ``text`` is the whole output once the ``with`` block has ended."""

    def __init__(self, source: str) -> None:
        import threading

        self.source = source
        self._lines: list[str] = []
        read_fd, self.fd = os.pipe()
        self._reader = os.fdopen(read_fd, encoding="utf-8", errors="replace")
        self._thread = threading.Thread(target=self._pump, daemon=True)

    def _pump(self) -> None:
        for line in self._reader:
            self._lines.append(line)
            if line.strip():
                tool_line(self.source, line.rstrip("\n"))

    def __enter__(self) -> "ToolPipe":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        os.close(self.fd)  # the subprocess has ended: with our end closed too, the reader sees the end
        self._thread.join()
        self._reader.close()

    @property
    def text(self) -> str:
        return "".join(self._lines)
