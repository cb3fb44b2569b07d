"""The one OpenAI error envelope, and the handlers that put every failure into it."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from zwz.server.api.request_shape import SHAPE_ERROR_CODES
from zwz.server.engines.base import EngineError

logger = logging.getLogger(__name__)

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    501: "not_implemented_error",
    503: "server_overloaded",
}

_DESCRIPTION_BY_STATUS = {
    400: "Invalid request: malformed JSON, a field out of range, an unusable image (the envelope names the `param`).",
    401: "Missing or wrong API key (`Authorization: Bearer <key>`).",
    404: "The requested model is not served here.",
    413: "The request body is over the server's size limit.",
    501: "This engine cannot do what was asked (attention maps).",
    503: "The server is at capacity; retry later.",
}


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """The OpenAI error envelope: every non-2xx answer has this body."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for ``statuses``, each with the envelope model (for a route's ``responses=``)."""
    return {status: {"model": ErrorResponse, "description": _DESCRIPTION_BY_STATUS[status]} for status in statuses}


class APIError(Exception):
    """An error to return to the client as-is."""

    def __init__(self, status_code: int, message: str, *, param: str | None = None, code: str | None = None,
                 error_type: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.param = param
        self.code = code
        self.error_type = error_type or _TYPE_BY_STATUS.get(status_code, "internal_error")


def error_body(message: str, error_type: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(status_code: int, message: str, *, error_type: str | None = None, param: str | None = None,
                   code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    error_type = error_type or _TYPE_BY_STATUS.get(status_code, "internal_error")
    return JSONResponse(error_body(message, error_type, param=param, code=code), status_code=status_code,
                        headers=headers)


def as_api_error(exc: BaseException) -> APIError:
    """Any exception -> the APIError the client sees (internal details stay in the log)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, EngineError):
        return APIError(exc.status_code, exc.message, param=exc.param, code=exc.code, error_type=exc.error_type)
    logger.error("internal error", exc_info=exc)
    return APIError(500, f"internal error: {type(exc).__name__}", error_type="internal_error")


def _validation_error(exc: RequestValidationError) -> APIError:
    errors = exc.errors()
    if not errors:
        return APIError(400, "invalid request")
    first = errors[0]
    if first.get("type") == "json_invalid":
        return APIError(400, "the request body is not valid JSON")
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    param = ".".join(loc) or None
    code = first.get("type") if first.get("type") in SHAPE_ERROR_CODES else None
    return APIError(400, f"{param or 'body'}: {first.get('msg', 'invalid value')}", param=param, code=code)


def install_error_handlers(app: FastAPI, on_error=None) -> None:
    """Re-wrap validation (400, not 422), HTTP and engine errors into the envelope; ``on_error(status)`` counts them."""

    def _respond(err: APIError, headers: dict[str, str] | None = None) -> JSONResponse:
        if on_error is not None:
            on_error(err.status_code)
        return error_response(err.status_code, err.message, error_type=err.error_type, param=err.param, code=err.code,
                              headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return _respond(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        # Starlette's 405 carries the route's `Allow` header (RFC 9110 requires it); keep every header it set.
        return _respond(APIError(exc.status_code, message, code=getattr(exc, "code", None)), headers=exc.headers)

    @app.exception_handler(APIError)
    async def _api(request: Request, exc: APIError):
        return _respond(exc)

    @app.exception_handler(EngineError)
    async def _engine(request: Request, exc: EngineError):
        return _respond(as_api_error(exc))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        return _respond(as_api_error(exc))


def document_errors(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI schema say what the handlers above do: validation errors are 400 in the envelope.

    FastAPI declares a 422 with its own error model on every route that takes input; this server never sends
    one, so the schema drops it (and the models only it used), leaving the 400 each route declares.
    """

    generate = app.openapi  # FastAPI's own, which caches its result in app.openapi_schema

    def openapi() -> dict[str, Any]:
        if not app.openapi_schema:
            schema = generate()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            schemas = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
        return app.openapi_schema

    app.openapi = openapi
