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

from . import jsonio
from .backend import BackendError
from .csvbody import read_csv
from .errors import InputError, short
from .front import Front, json_response, retry_headers, timing_of
from .openapi import invocations_request_body, invocations_responses
from .rawbody import BodyRefused, check_content_type

CSV = "text/csv"
#: MLflow's error codes (mlflow.protos.databricks_pb2) by our HTTP status
ERROR_CODES = {400: "BAD_REQUEST", 413: "BAD_REQUEST", 415: "BAD_REQUEST", 422: "BAD_REQUEST",
               502: "INTERNAL_ERROR", 503: "TEMPORARILY_UNAVAILABLE", 504: "INTERNAL_ERROR"}


def mlflow_error(status: int, message: str, **extra) -> Response:
    """MLflow's error shape; a 422 (a record that does not fit) is MLflow's 400 BAD_REQUEST."""
    headers = extra.pop("headers", None)
    status = 400 if status == 422 else status
    body = {"error_code": ERROR_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR"),
            "message": message, **{k: v for k, v in extra.items() if v is not None}}
    return json_response(body, status, headers)


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

    @app.post(
        "/invocations",
        summary="Predict, MLflow scoring server protocol (JSON or CSV)",
        openapi_extra={"requestBody": invocations_request_body(front.spec, record_model)},
        responses=invocations_responses(),
    )
    async def invocations(request: Request) -> Response:
        timing = timing_of(request)
        try:
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
                if is_csv:
                    text = _csv_text(raw)
                else:
                    payload = front.decode(raw)
            if is_csv:
                if front.validator is None:
                    raise InputError(415, "this model takes tensors: send JSON ({\"inputs\": [...]}), not CSV")
                with timing.stage("validate"):
                    inputs = front.validated(read_csv(text, front.shape, types))
            else:
                inputs = front.inputs(payload, timing, front.invocations_shape)
            predictions = await front.predict(inputs, timing)
            with timing.stage("serialize"):
                body = b'{"predictions":' + jsonio.dumps(predictions) + b"}"
        except BodyRefused as exc:
            return mlflow_error(exc.status, exc.message)
        except InputError as exc:
            return mlflow_error(exc.status, exc.detail, errors=exc.errors)
        except BackendError as exc:
            return mlflow_error(exc.status, exc.detail, headers=retry_headers(exc), **exc.extra)
        except jsonio.NotSerializable as exc:
            return mlflow_error(502, f"the model's answer cannot be written as JSON ({exc})")
        return json_response(body)


def _csv_text(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyRefused(400, f"the body is not valid UTF-8 (byte {exc.start}); send UTF-8 encoded CSV") from None
    if "\x00" in text:
        raise BodyRefused(400, "the CSV body holds a NUL byte")
    return text
