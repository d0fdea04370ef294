"""Domain errors. Services raise these; one handler in `app.main` maps them to the API's error shape."""

from typing import Any


class PrefLabError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}
        self.retry_after = retry_after
        """Seconds a client should wait before trying again (the `Retry-After` header of 429 and 503)."""

    def as_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidInput(PrefLabError):
    status_code = 422
    code = "invalid_input"

    @classmethod
    def from_pydantic(cls, exc: Any, *, prefix: str = "") -> "InvalidInput":
        """Name the offending field(s) of a pydantic ValidationError in a sentence and in `details`."""
        errors = [
            {
                "field": ".".join(str(part) for part in ((prefix,) if prefix else ()) + tuple(err["loc"])),
                "message": err["msg"],
            }
            for err in exc.errors()
        ]
        first = errors[0]
        return cls(
            f"{first['field'] or 'body'}: {first['message']}",
            code="validation_failed",
            details={"field": first["field"], "errors": errors},
        )


class NotAuthenticated(PrefLabError):
    status_code = 401
    code = "not_authenticated"


class Forbidden(PrefLabError):
    status_code = 403
    code = "forbidden"


class NotFound(PrefLabError):
    status_code = 404
    code = "not_found"


class Conflict(PrefLabError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(PrefLabError):
    status_code = 413
    code = "payload_too_large"


class TooManyRequests(PrefLabError):
    status_code = 429
    code = "too_many_requests"


class ServiceUnavailable(PrefLabError):
    status_code = 503
    code = "service_unavailable"
