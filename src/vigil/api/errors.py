"""The one place domain errors become HTTP responses: ``{"detail", "code"}`` (+ ``errors`` for bad fields).

=================  ====  ================
domain error       HTTP  code
=================  ====  ================
Unauthorized       401   unauthorized
Forbidden          403   forbidden
AccountLocked      423   locked
NotFound           404   not_found
Conflict           409   conflict
Invalid            422   invalid
StorageFull        507   storage_full
UpstreamTimeout    504   gateway_timeout
malformed JSON     400   bad_request
value the database
cannot hold        422   invalid
=================  ====  ================

The last row: request values that pass their type but not the column (an ID past 32 bits on PostgreSQL or
64 bits on SQLite, a NUL character in text on PostgreSQL) are the caller's mistake, reported as such with the
value, not a 500 — on whichever database the node runs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from vigil.access.users import AccountLocked
from vigil.api.schemas import ErrorOut, FieldError
from vigil.domain.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    StorageFull,
    Unauthorized,
    UpstreamTimeout,
    VigilError,
)

log = logging.getLogger(__name__)

#: Most specific first: AccountLocked is a Forbidden.
_MAPPING: tuple[tuple[type[VigilError], int, str], ...] = (
    (AccountLocked, 423, "locked"),
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (Invalid, 422, "invalid"),
    (StorageFull, 507, "storage_full"),
    (UpstreamTimeout, 504, "gateway_timeout"),
)

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


class InvalidFields(Invalid):
    """Several fields are wrong; each ``(field, message)`` is reported."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = list(errors)


def status_for(exc: VigilError) -> tuple[int, str]:
    """The HTTP status and code for a domain error."""
    for cls, status, code in _MAPPING:
        if isinstance(exc, cls):
            return status, code
    return 500, "internal"


def field_errors(errors: Sequence[Any], *, skip_loc: int = 0) -> list[FieldError]:
    """Pydantic error dicts as ``FieldError`` (dotted field path, message without pydantic's prefix)."""
    out: list[FieldError] = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())][skip_loc:]
        message = str(err.get("msg", "is invalid"))
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        if err.get("type") == "missing":
            message = "is required"
        elif err.get("type") == "extra_forbidden":
            message = "is not a known field"
        out.append(FieldError(field=".".join(loc) or "body", message=message))
    return out


def invalid_from(exc: ValidationError) -> InvalidFields:
    """A pydantic model error raised outside request parsing (e.g. a merged PATCH) as InvalidFields."""
    return InvalidFields(field_errors(exc.errors()))


def error_response(status: int, code: str, detail: str, errors: Sequence[FieldError] = ()) -> JSONResponse:
    """The JSON error body every failure uses."""
    body = ErrorOut(detail=detail, code=code, errors=list(errors))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


async def _vigil_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, VigilError)
    status, code = status_for(exc)
    errors = exc.errors if isinstance(exc, InvalidFields) else []
    return error_response(status, code, str(exc) or code, errors)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    raw = exc.errors()
    if any(err.get("type") == "json_invalid" for err in raw):
        return error_response(400, "bad_request", "request body is not valid JSON")
    # loc starts with "body"/"query"/"path"; the body prefix is noise, the others say where to look.
    errors = [
        FieldError(field=e.field.removeprefix("body.") if e.field != "body" else "body", message=e.message)
        for e in field_errors(raw)
    ]
    return error_response(422, "invalid", "; ".join(f"{e.field}: {e.message}" for e in errors), errors)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(exc.detail))


#: PostgreSQL's SQLSTATE class 22 (data exception): the value itself is wrong for its column.
_PG_DATA_EXCEPTION = "22"
#: SQLSTATE 22021 character_not_in_repertoire: PostgreSQL text cannot hold NUL.
_PG_NUL_IN_TEXT = "22021"
_QUERY_ARGUMENT = re.compile(r"^invalid input for query argument \$\d+: ")


def _unstorable_value(exc: Exception) -> str | None:
    """What is wrong with a request value the database refused, or None if ``exc`` is something else."""
    if isinstance(exc, OverflowError) and "SQLite INTEGER" in str(exc):
        return "a number in the request is too large (at most 9223372036854775807)"
    if isinstance(exc, DBAPIError):
        sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
        if sqlstate == _PG_NUL_IN_TEXT:
            return "text in the request contains a NUL character (\\u0000), which cannot be stored"
        if sqlstate.startswith(_PG_DATA_EXCEPTION):
            first_line = str(exc.orig).splitlines()[0] if str(exc.orig) else sqlstate
            return f"a value in the request cannot be stored or looked up: {_QUERY_ARGUMENT.sub('', first_line)}"
    return None


async def _database_value_error(request: Request, exc: Exception) -> Response:
    detail = _unstorable_value(exc)
    if detail is None:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal", "internal error")
    log.info("%s %s: %s", request.method, request.url.path, detail)
    return error_response(422, "invalid", detail)


def install_error_handlers(app: FastAPI) -> None:
    """Register the mappings above on ``app``."""
    app.add_exception_handler(VigilError, _vigil_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_value_error)
    app.add_exception_handler(OverflowError, _database_value_error)


#: ``responses=`` for routers so the OpenAPI schema (and the console's types) describe error bodies.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Not logged in or session expired"},
    403: {"model": ErrorOut, "description": "Role may not do this"},
    404: {"model": ErrorOut, "description": "Not found or outside the caller's region scope"},
    409: {"model": ErrorOut, "description": "Conflicts with existing data"},
    422: {"model": ErrorOut, "description": "Invalid input; `errors` names each bad field"},
}
