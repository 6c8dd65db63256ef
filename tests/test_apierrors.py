"""The shared handlers on a bare app: each service's renderer decides the body, nothing of
FastAPI's ``{"detail": ...}`` is left, and the OpenAPI document's 422 names the service's schema."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from sevlaunch import _apierrors


class Body(BaseModel):
    count: int = Field(ge=1)


def _app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None)
    _apierrors.install(
        app, lambda status, reason, message: {"s": status, "r": reason, "m": message}
    )
    _apierrors.document_errors(app, {"type": "object"}, "Mine")

    @app.post("/thing")
    def thing(body: Body) -> int:
        return body.count

    return app


def test_every_refusal_goes_through_the_renderer() -> None:
    client = TestClient(_app())
    assert client.post("/thing", json={"count": 2}).json() == 2
    r = client.post("/thing", json={"count": 0})
    assert (r.status_code, r.json()["r"], r.json()["s"]) == (422, "invalid-request", 422)
    assert r.json()["m"].startswith("body.count: ")
    r = client.post("/thing", content=b"{", headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["r"]) == (422, "invalid-request")
    r = client.post("/thing", json={"count": 0, "other": "x"})
    assert "body.count" in r.json()["m"]
    assert client.get("/nowhere").json() == {"s": 404, "r": "not-found", "m": "Not Found"}
    assert client.get("/thing").json()["r"] == "method-not-allowed"


def test_openapi_422_names_the_services_schema() -> None:
    client = TestClient(_app())
    document = client.get("/openapi.json").json()
    answer = document["paths"]["/thing"]["post"]["responses"]["422"]
    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Mine"}
    assert document["components"]["schemas"]["Mine"] == {"type": "object"}
    assert {"HTTPValidationError", "ValidationError"}.isdisjoint(document["components"]["schemas"])
    assert client.get("/openapi.json").json() == document  # built once
