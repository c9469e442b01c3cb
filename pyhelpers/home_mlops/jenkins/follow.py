"""Trigger a job, follow its console while it runs, and end with the CLI's exit code.

1. queue the build (with its parameters) and wait for the queue item to become build N;
2. follow the console live with Jenkins' progressive-text protocol: GET
   `<build>/logText/progressiveText?start=<offset>` returns the text from offset on,
   `X-Text-Size` (the next offset) and `X-More-Data: true` while the build runs; each
   chunk is written as it arrives, as plain text (never read as markup);
3. read the final result; a build that did not succeed exits with the home-mlops exit
   code of the step that failed, read from the result JSON the pipeline archived
   (`home-mlops-*.json`, `ok: false`, `exit_code`), else 4 (build failed).
"""
from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from home_mlops.errors import ExitCode, HomeMlopsError, NotFound, Unavailable
from home_mlops.jenkins.client import JenkinsConfig, job_url, server as make_server, translate

FINAL_RESULTS = ("SUCCESS", "UNSTABLE", "FAILURE", "NOT_BUILT", "ABORTED")
RESULT_PREFIX, RESULT_SUFFIX = "home-mlops-", ".json"
MAX_RESULT_BYTES = 1 << 20  # a result JSON is a few KB; a bigger "result" is not ours
STEP_CODES = {int(code) for code in ExitCode if code not in (ExitCode.OK,)}


@dataclass(frozen=True)
class Poll:
    """How often to ask, and until when (time.monotonic())."""

    interval: float
    deadline: float

    @classmethod
    def for_seconds(cls, timeout: float, interval: float) -> "Poll":
        return cls(interval=interval, deadline=time.monotonic() + timeout)

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def wait(self) -> None:
        time.sleep(self.interval)


def follow_console(server, job: str, number: int, poll: Poll, write: Callable[[str], Any]) -> int:
    """Write the build's console to ``write`` chunk by chunk until Jenkins says there is no
    more; returns the console's size."""
    import codecs

    import requests

    offset = 0
    url = f"{job_url(server.server, job)}{number}/logText/progressiveText"
    # offsets count bytes: a chunk may end inside a UTF-8 character, finished by the next one
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while True:
        response = server.jenkins_request(requests.Request("GET", url, params={"start": offset}))
        text = decoder.decode(response.content)
        if text:
            write(text)
        size = response.headers.get("X-Text-Size", "")
        offset = int(size) if size.isdigit() else offset + len(response.content)
        if response.headers.get("X-More-Data", "").lower() != "true":
            tail = decoder.decode(b"", final=True)
            if tail:
                write(tail)
            return offset
        if poll.expired():
            raise Unavailable(f"build #{number} of {job} still running after the timeout",
                              hint="raise --timeout, or follow it in the Jenkins UI")
        poll.wait()


def wait_for_start(server, job: str, queue_id: int, poll: Poll) -> int:
    while True:
        item = server.get_queue_item(queue_id)
        if item.get("cancelled"):
            raise HomeMlopsError(f"the queued build of {job} was cancelled", code=ExitCode.BUILD_FAILED)
        executable = item.get("executable") or {}
        if executable.get("number"):
            return int(executable["number"])
        if poll.expired():
            why = item.get("why") or "still queued"
            raise Unavailable(f"the build of {job} did not start in time: {why}",
                              hint="check that Jenkins has a free executor")
        poll.wait()


def wait_for_result(server, job: str, number: int, poll: Poll) -> dict[str, Any]:
    while True:
        info = server.get_build_info(job, number)
        if not info.get("building") and info.get("result") in FINAL_RESULTS:
            return info
        if poll.expired():
            raise Unavailable(f"build #{number} of {job} has no result after the timeout")
        poll.wait()


def archived_results(server, info: dict[str, Any]) -> list[dict[str, Any]]:
    """The home-mlops result JSONs the build archived (unreadable or foreign files skipped)."""
    import requests

    results = []
    base = str(info.get("url") or "")
    for artifact in info.get("artifacts") or []:
        path = str(artifact.get("relativePath") or "")
        name = path.rsplit("/", 1)[-1]
        if not (base and name.startswith(RESULT_PREFIX) and name.endswith(RESULT_SUFFIX)):
            continue
        try:
            response = server.jenkins_request(requests.Request("GET", f"{base}artifact/{path}"))
            if len(response.content) > MAX_RESULT_BYTES:
                continue
            data = json.loads(response.content)
        except Exception:  # noqa: BLE001 - a result we cannot read only loses the finer exit code
            continue
        if isinstance(data, dict):
            results.append(data)
    return results


def exit_code(result: str, results: list[dict[str, Any]]) -> ExitCode:
    """SUCCESS: 0. Otherwise the failing step's own exit code (its archived JSON), else 4."""
    if result == "SUCCESS":
        return ExitCode.OK
    for data in results:
        code = data.get("exit_code")
        if data.get("ok") is False and type(code) is int and code in STEP_CODES:
            return ExitCode(code)
    return ExitCode.BUILD_FAILED


def description_lines(text: Any) -> list[str]:
    """A build description as text lines: the library writes HTML (escaped lines joined by
    <br>, for the Safe HTML formatter); control characters show as '?' (text from Jenkins)."""
    plain = html.unescape(re.sub(r"<br\s*/?>", "\n", str(text or ""), flags=re.I))
    return ["".join(ch if ch.isprintable() else "?" for ch in line.strip())
            for line in plain.splitlines() if line.strip()]


def _last_line(text: Any) -> str:
    lines = description_lines(text)
    return lines[-1][:300] if lines else ""


def trigger_and_follow(config: JenkinsConfig, job: str, parameters: dict[str, str] | None, *,
                       timeout: float, interval: float, missing_hint: str,
                       write: Callable[[str], Any], say: Callable[[str], Any]) -> ExitCode:
    """Trigger ``job`` (with ``parameters``, or none), stream its console to ``write`` and
    return ExitCode.OK when it ends SUCCESS; raise its error (with the mapped code) otherwise."""
    client = make_server(config)
    poll = Poll.for_seconds(timeout, interval)
    try:
        if client.get_job_name(job) is None:
            raise NotFound(f"Jenkins at {config.url} has no job {job!r}",
                           "the app's jobs, made from jobs/ by Jenkins Job Builder", missing_hint)
        queue_id = client.build_job(job, parameters=parameters)
        say(f"> {job}: queued (queue item {queue_id})")
        number = wait_for_start(client, job, queue_id, poll)
        say(f"> {job} #{number}: {job_url(config.url, job)}{number}/console")
        follow_console(client, job, number, poll, write)
        info = wait_for_result(client, job, number, poll)
        result = str(info.get("result"))
        code = exit_code(result, [] if result == "SUCCESS" else archived_results(client, info))
    except HomeMlopsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every client error becomes one clear message
        raise translate(exc, config) from None
    if code != ExitCode.OK:
        last = _last_line(info.get("description"))
        raise HomeMlopsError(
            f"{job} #{number} finished {result}" + (f" ({last})" if last else ""),
            hint=f"see {info.get('url') or job_url(config.url, job)}console",
            code=code,
        )
    say(f"ok {job} #{number} SUCCESS")
    for line in description_lines(info.get("description")):
        say(line)
    return code
