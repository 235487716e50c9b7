"""Errors in the Public API's shape: ``{"errors": [{"type", "message", "field"}]}``."""

from __future__ import annotations

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


def error_body(type_: str, message: str, field: str | None = None) -> dict[str, object]:
    error: dict[str, object] = {"type": type_, "message": message}
    if field is not None:
        error["field"] = field
    return {"errors": [error]}


async def handle_api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc.type, exc.message, exc.field), status_code=exc.status)
