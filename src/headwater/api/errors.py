"""Errors in the Public API's shape: ``{"errors": [{"type", "message", "field"}]}``."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse


class ApiError(Exception):
    """Raise from a route to answer with the Public API's error body."""

    def __init__(self, status: int, type_: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.field = field


def body_object(body: Any, allowed: set[str]) -> dict[str, Any]:
    """A Public API body: a JSON object of the fields a route knows, else a 422 naming the
    first unknown one."""
    if not isinstance(body, dict):
        raise ApiError(422, "validation", "the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(
            422,
            "validation",
            f"{unknown[0]}: unknown field (expected one of: {', '.join(sorted(allowed))})",
            unknown[0],
        )
    return body


def error_body(type_: str, message: str, field: str | None = None) -> dict[str, object]:
    error: dict[str, object] = {"type": type_, "message": printable(message)}
    if field is not None:
        error["field"] = printable(field)
    return {"errors": [error]}


def printable(text: str) -> str:
    """``text`` as UTF-8 can carry it: a message quoting a client's lone surrogate must not
    fail to render (and turn a 4xx into a 500)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


async def handle_api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc.type, exc.message, exc.field), status_code=exc.status)
