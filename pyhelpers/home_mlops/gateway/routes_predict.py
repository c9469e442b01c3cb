"""``POST /predict``: MLflow scoring JSON or a flat record in, ``{"predictions": [...]}`` out.

Errors answer ``{"detail": "...", "errors": [{"row", "field", "type", "message"}]}``
(the errors list where fields are at fault), as this route always has.
"""
from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import Response

from . import jsonio
from .backend import BackendError
from .errors import InputError
from .front import Front, json_response, retry_headers, timing_of
from .openapi import scoring_request_body, scoring_responses
from .rawbody import BodyRefused, check_content_type


def add_predict_route(app: FastAPI, front: Front, record_model) -> None:
    @app.post(
        "/predict",
        summary="Predict with the deployed model",
        openapi_extra={"requestBody": scoring_request_body(front.spec, record_model)},
        responses=scoring_responses(),
    )
    async def predict(request: Request) -> Response:
        timing = timing_of(request)
        try:
            with timing.stage("parse"):
                check_content_type(request.headers.get("content-type"))
                payload = front.decode(await front.read_body(request))
            inputs = front.inputs(payload, timing)
            predictions = await front.predict(inputs, timing)
            with timing.stage("serialize"):
                body = b'{"predictions":' + jsonio.dumps(predictions) + b"}"
        except BodyRefused as exc:
            return json_response({"detail": exc.message}, exc.status)
        except InputError as exc:
            return json_response(exc.body(), exc.status)
        except BackendError as exc:
            return json_response({"detail": exc.detail, **exc.extra}, exc.status, retry_headers(exc))
        except jsonio.NotSerializable as exc:
            return json_response({"detail": f"the model's answer cannot be written as JSON ({exc})"}, 502)
        return json_response(body)
