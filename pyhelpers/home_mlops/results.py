"""The machine-readable result every command can write with --json PATH (or --json - for stdout),
and its one-line summary: the same text the Jenkins build description shows (Summary.groovy)."""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from home_mlops import output
from home_mlops.errors import BadInput, HomeMlopsError

STDOUT = "-"
# Which description label (StepSpec.kind on the Groovy side) each command's summary uses.
KINDS = {"bento-build": "bento", "fastapi-build": "gateway", "deploy": "deploy", "undeploy": "undeploy"}
# deploy_probe.log_tail indents a container's log lines like this inside a DeployFailed message.
LOG_LINE_PREFIX = "    | "


def check_target(path: str | os.PathLike[str] | None) -> None:
    """Refuse, before a command does anything, a --json path no result can be written to."""
    if path and str(path) != STDOUT and Path(path).is_dir():
        raise BadInput(f"--json {path} is a folder",
                       "a file for the result, or - for stdout",
                       f"name a file in it, e.g. --json {Path(path) / 'result.json'}")


def write_json(path: str | os.PathLike[str] | None, data: dict[str, Any]) -> None:
    """Write atomically: a reader (Groovy's readJSON) never sees half a file. ``-`` is stdout.

    Only a regular file (or a new one) is replaced: ``--json /dev/null`` or a named pipe is
    written in place, where a rename would have put a regular file over the host's device."""
    if not path:
        return
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    if str(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = Path(path)
    if target.exists() and not target.is_file():
        with open(target, "w") as handle:  # a device or a pipe: nothing to replace atomically
            handle.write(text)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".result-", dir=target.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, target)


def _text(value: Any) -> str:
    """Summary.text: absent, null and non-scalar values are empty."""
    return "" if value is None or not isinstance(value, (str, int, float, bool)) else str(value)


def _image_line(kind: str, result: dict[str, Any]) -> str:
    image, digest = _text(result.get("image")), _text(result.get("digest"))
    return f"{kind}: {image or '(no image)'}" + (f" ({digest})" if digest else "")


def _at(image: dict[str, Any]) -> str:
    digest = _text(image.get("digest"))
    return _text(image.get("image")) + (f" @ {digest}" if digest else "")


def registered_text(result: dict[str, Any]) -> str:
    """'models:/<name>@<alias> = version <v>, run <id>' when the run was named through the model registry."""
    registered = result.get("registered_model")
    if not isinstance(registered, dict) or not _text(registered.get("uri")):
        return ""
    return (f"{_text(registered.get('uri'))} = version {_text(registered.get('version'))}, "
            f"run {_text(registered.get('run_id'))}")


def summary_text(command: str, result: dict[str, Any]) -> str:
    """Summary.line(kind, result) for the step commands, Summary.success(...) for pipeline; a models:/
    RUN_ID adds its URI, version and run ([...] on a step's line, a 'model:' line in the pipeline's)."""
    text = _summary_text(command, result)
    registered = registered_text(result)
    if registered and command != "pipeline":
        return f"{text} [{registered}]"
    return text


def _summary_text(command: str, result: dict[str, Any]) -> str:
    kind = KINDS.get(command)
    if result.get("status") == "skipped":  # a build its app's serving mode does not use
        return f"{command}: skipped ({_text(result.get('reason'))})"
    if kind == "deploy":
        url, run = _text(result.get("url")), _text(result.get("run_id"))
        return f"deploy: {url or '(no url)'}" + (f" (run {run})" if run else "")
    if kind == "undeploy":
        removed = result.get("removed") if isinstance(result.get("removed"), list) else []
        app = _text(result.get("app"))
        return (f"undeploy: removed {', '.join(map(str, removed))}" if removed
                else "undeploy: nothing was deployed" + (f" for {app}" if app else ""))
    if kind:
        return _image_line(_text(result.get("role")) or kind, result)  # fastapi-build: gateway or server
    if command == "pipeline":
        bento, gateway, deployed = (result.get(k) or {} for k in ("bento", "gateway", "deploy"))
        lines = [f"home-mlops: deployed {_text(deployed.get('app')) or _text(bento.get('app'))}"]
        for built in (bento, gateway):  # the images the app's serving mode built (gateway: or the server)
            if built.get("status") != "skipped":
                role = _text(built.get("role")) or ("bento" if built is bento else "gateway")
                lines.append(f"  {role + ' image:':<14} {_at(built)}")
        lines.append(f"  url:           {_text(deployed.get('url'))}/predict")
        if _text(deployed.get("local_url")):
            lines.append(f"  on this host:  {_text(deployed.get('local_url'))}/predict")
        if registered_text(deployed):
            lines.append(f"  model:         {registered_text(deployed)}")
        if _text(deployed.get("previous_run_id")):
            lines.append(f"  replaced run:  {_text(deployed.get('previous_run_id'))}")
        return "\n".join(lines)
    if command == "resolve":
        return f"resolve: {_text(result.get('model_uri'))} -> {_text(result.get('local_path'))}"
    if command == "status":
        return f"status: {len(result.get('deployments') or [])} deployed"
    return f"{command}: done"


def failure_text(stage: str, exc: BaseException | str) -> str:
    """Summary.failure(stage, reason), with the first line of the error as the reason."""
    reason = str(exc).splitlines()[0] if str(exc) else "unknown error"
    return f"home-mlops: FAILED in stage '{stage or 'unknown'}': {reason}"


def error_log_tail(exc: HomeMlopsError) -> list[str]:
    """The failing tool's last lines: given by the error, or a container's log quoted in a deploy error."""
    if exc.log_tail:
        return [output.clean(line) for line in exc.log_tail]
    return [output.clean(line[len(LOG_LINE_PREFIX):]) for line in str(exc).splitlines()
            if line.startswith(LOG_LINE_PREFIX)]
