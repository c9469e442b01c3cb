"""``POST /invocations``: MLflow's scoring server protocol, so MLflow clients work unchanged.

The same bodies ``mlflow models serve`` takes: scoring JSON (``dataframe_split``,
``dataframe_records``, ``instances``, ``inputs``, with ``params`` beside them) as
``application/json``, or CSV with a header row as ``text/csv``. The answer is MLflow's
``{"predictions": [...]}``; an error is MLflow's ``{"error_code": "BAD_REQUEST",
"message": "..."}`` (400 for a body that does not fit, as MLflow answers), plus our
``errors`` list naming the rows and fields. The checks are the front door's own.
"""
from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import Response

from .backend import Inputs, Timing
from .csvbody import read_csv
from .errors import InputError, short
from .front import Front, Problem, add_fast_route, json_response
from .openapi import invocations_request_body, invocations_responses
from .rawbody import BodyRefused, check_content_type
from .routes_predict import predictions_body

CSV = "text/csv"
#: MLflow's error codes (mlflow.protos.databricks_pb2) by our HTTP status
ERROR_CODES = {400: "BAD_REQUEST", 413: "BAD_REQUEST", 415: "BAD_REQUEST", 422: "BAD_REQUEST",
               502: "INTERNAL_ERROR", 503: "TEMPORARILY_UNAVAILABLE", 504: "INTERNAL_ERROR"}


def mlflow_error(problem: Problem) -> Response:
    """MLflow's error shape; a 422 (a record that does not fit) is MLflow's 400 BAD_REQUEST."""
    status = 400 if problem.status == 422 else problem.status
    body = {"error_code": ERROR_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR"),
            "message": problem.message, **problem.extra}
    if problem.errors is not None:
        body["errors"] = problem.errors
    return json_response(body, status, problem.headers)


def _csv_media(header: str | None) -> bool:
    media, _, params = (header or "").partition(";")
    if media.strip().lower() != CSV:
        return False
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise BodyRefused(415, f"unsupported charset {short(value.strip(), 40)!r}: send the CSV in UTF-8")
    return True


def add_invocations_route(app: FastAPI, front: Front, record_model) -> None:
    types = {name: col.type for name, col in zip(front.spec.column_names, front.spec.inputs)}

    async def read(request: Request, timing: Timing) -> Inputs:
        with timing.stage("parse"):
            content_type = request.headers.get("content-type")
            is_csv = _csv_media(content_type)
            if not is_csv:
                try:
                    check_content_type(content_type)
                except BodyRefused as exc:
                    raise BodyRefused(415, exc.message.replace("send the body as JSON with",
                                                               "send the body as JSON or CSV with")
                                      .replace("'Content-Type: application/json'",
                                               "'Content-Type: application/json' or 'text/csv'")) from None
            raw = await front.read_body(request)
            if not is_csv:
                payload = front.decode(raw)
            else:
                text = _csv_text(raw)
        if not is_csv:
            return front.inputs(payload, timing, front.invocations_shape)
        if front.validator is None:
            raise InputError(415, "this model takes tensors: send JSON ({\"inputs\": [...]}), not CSV")
        with timing.stage("validate"):
            return front.validated(read_csv(text, front.shape, types))

    @app.post(
        "/invocations",
        summary="Predict, MLflow scoring server protocol (JSON or CSV)",
        openapi_extra={"requestBody": invocations_request_body(front.spec, record_model)},
        responses=invocations_responses(),
    )
    async def invocations(request: Request) -> Response:
        return await front.respond(request, read, predictions_body, mlflow_error)

    add_fast_route(app, "/invocations", invocations)


def _csv_text(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyRefused(400, f"the body is not valid UTF-8 (byte {exc.start}); send UTF-8 encoded CSV") from None
    if "\x00" in text:
        raise BodyRefused(400, "the CSV body holds a NUL byte")
    return text
