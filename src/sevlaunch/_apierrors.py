"""What both services' APIs share about refusals FastAPI makes before a route runs.

FastAPI answers a body it cannot parse or validate, an unknown path and a wrong method with its
own ``{"detail": ...}``; each service documents one error shape of its own, so it registers
these handlers with its renderer, and :func:`document_errors` makes the OpenAPI document say
the same thing the service answers. Neither service serves ``/docs``: FastAPI's Swagger UI
loads its scripts from a CDN, and the services must work offline (``/openapi.json`` stays).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

#: (status, reason code, message) -> the service's error body.
Render = Callable[[int, str, str], Mapping[str, object]]

#: The reason code of each refusal FastAPI or Starlette makes by itself.
_HTTP_REASONS = {404: "not-found", 405: "method-not-allowed"}
INVALID = "invalid-request"


def validation_message(exc: RequestValidationError) -> str:
    """One line naming each offending field (``body.rate``) and what is wrong with it."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error["msg"])
    return "; ".join(parts) or "the request is not valid"


def install(app: FastAPI, render: Render) -> None:
    """Answer validation errors (422) and Starlette's own refusals in the service's shape."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(dict(render(422, INVALID, validation_message(exc))), status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        reason = _HTTP_REASONS.get(exc.status_code, f"http-{exc.status_code}")
        body = dict(render(exc.status_code, reason, str(exc.detail)))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def document_errors(app: FastAPI, schema: Mapping[str, Any], name: str) -> None:
    """Make every operation's 422 answer (which FastAPI documents as its own
    ``HTTPValidationError``) refer to the service's error schema ``name`` instead."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        ref = {"$ref": f"#/components/schemas/{name}"}
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                answer = operation.get("responses", {}).get("422")
                if answer is not None:
                    answer["content"] = {"application/json": {"schema": ref}}
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas.setdefault(name, dict(schema))
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
