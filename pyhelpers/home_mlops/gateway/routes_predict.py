"""``POST /predict``: MLflow scoring JSON or a flat record in, ``{"predictions": [...]}`` out.

Errors answer ``{"detail": "...", "errors": [{"row", "field", "type", "message"}]}``
(the errors list where fields are at fault), as this route always has.
"""
from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import Response

from . import jsonio
from .backend import Inputs, Timing
from .front import Front, Problem, add_fast_route, json_response
from .openapi import scoring_request_body, scoring_responses
from .rawbody import check_content_type


def predictions_body(predictions: list) -> bytes:
    """``{"predictions": [...]}``: the answer of /predict and of MLflow's /invocations."""
    return b'{"predictions":' + jsonio.dumps(predictions) + b"}"


def add_predict_route(app: FastAPI, front: Front, record_model) -> None:
    async def read(request: Request, timing: Timing) -> Inputs:
        with timing.stage("parse"):
            check_content_type(request.headers.get("content-type"))
            payload = front.decode(await front.read_body(request))
        return front.inputs(payload, timing)

    def refuse(problem: Problem) -> Response:
        body = {"detail": problem.message, **problem.extra}
        if problem.errors is not None:
            body["errors"] = problem.errors
        return json_response(body, problem.status, problem.headers)

    @app.post(
        "/predict",
        summary="Predict with the deployed model",
        openapi_extra={"requestBody": scoring_request_body(front.spec, record_model)},
        responses=scoring_responses(),
    )
    async def predict(request: Request) -> Response:
        return await front.respond(request, read, predictions_body, refuse)

    add_fast_route(app, "/predict", predict)
