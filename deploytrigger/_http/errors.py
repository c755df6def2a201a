"""What an answer that is not a success means: the error to raise, and its message.

The transport (``transport.py``) sends requests; this module turns an error
status, a CSRF refusal or a request that got no answer into the
:class:`~deploytrigger.exceptions.DeployTriggerError` it means, with the
server's ``detail`` and a hint of what to change. :func:`refine` lets the
services above name what was asked for.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type, TypeVar

import requests

from ..exceptions import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConnectionFailedError,
    CSRFError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    TLSError,
    TransportError,
)
from .retries import parse_retry_after

E = TypeVar("E", bound=APIError)

_STATUS_ERRORS: Dict[int, Type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: BadRequestError,
    422: BadRequestError,
    429: RateLimitedError,
}

_HINTS = {
    401: "check PREFECT_API_KEY or PREFECT_API_AUTH_STRING",
    403: "the credentials are not allowed to do this",
}


def refine(exc: APIError, error_type: Type[E], message: str, **extra: Any) -> E:
    """``exc`` as a more specific error about the same answer, naming what was asked for."""
    where = f" ({exc.method} {exc.url} answered {exc.status_code})" if exc.method else ""
    hint = f": {exc.hint}" if exc.hint else ""
    return error_type(message + where + hint, **extra, **exc.context())


def detail_of(response: requests.Response) -> Any:
    """The ``detail`` of an error answer's JSON body, or None."""
    try:
        payload = response.json() if response.content else None
    except ValueError:
        return None
    return payload.get("detail") if isinstance(payload, dict) else None


def csrf_error(
    response: requests.Response, method: str, url: str, attempts: int, detail: Any, why: str
) -> CSRFError:
    """The error for a request the server's CSRF protection keeps refusing."""
    if why == "no token issued":
        explanation = "and GET /csrf-token issued no token (CSRF protection off there?)"
    else:
        explanation = "also with a fresh CSRF token from GET /csrf-token"
    return CSRFError(
        f"{method} {url} answered 403 after {_attempts(attempts)}: {detail} ({explanation}; "
        "a proxy that strips the Prefect-Csrf-Token / Prefect-Csrf-Client headers, or "
        "several servers behind one URL that do not share their tokens, can cause this)",
        status_code=response.status_code,
        detail=detail,
        method=method,
        url=url,
        attempts=attempts,
    )


def json_or_error(
    response: requests.Response,
    method: str,
    url: str,
    attempts: int,
    hint: Optional[str] = None,
) -> Any:
    """The answer's JSON, or the error its status means (``hint`` ends its message)."""
    status = response.status_code
    try:
        payload = response.json() if response.content else None
        parsed = True
    except ValueError:
        payload, parsed = None, False
    if status < 400:
        if not parsed:
            raise InvalidResponseError(
                f"{method} {url} answered {status} with a body that is not JSON: "
                f"{_snippet(response.text)}",
                method=method,
                url=url,
                status_code=status,
            )
        return payload
    detail: Any = payload.get("detail", payload) if isinstance(payload, dict) else payload
    if detail is None:
        detail = _snippet(response.text) or response.reason
    message = f"{method} {url} answered {status} {response.reason or ''}".rstrip()
    if attempts > 1:
        message += f" after {attempts} attempts"
    message += f": {detail}"
    status_hint = _HINTS.get(status)
    if status_hint:
        message += f" ({status_hint})"
    if hint:
        message += f"; {hint}"
    context = {
        "status_code": status,
        "detail": detail,
        "method": method,
        "url": url,
        "attempts": attempts,
        "hint": hint,
    }
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise RateLimitedError(message, retry_after=retry_after, **context)
    error_type = _STATUS_ERRORS.get(status, ServerError if status >= 500 else APIError)
    raise error_type(message, **context)


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def reason(exc: BaseException) -> str:
    """The innermost readable reason of a requests/urllib3 error, without the noise."""
    text = str(exc.args[0]) if exc.args else str(exc)
    for marker in ("Caused by ", "): "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    text = text.strip("'\" ")
    while text.startswith("(") and text.count("(") > text.count(")"):
        text = text[1:].strip("'\" ")
    while text.endswith(")") and text.count(")") > text.count("("):
        text = text[:-1].rstrip("'\" ")  # a wrapper's closing parenthesis, not the reason's
    return text or type(exc).__name__


_PLAIN_HTTP_REASONS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE")
"""OpenSSL's reasons for a TLS handshake answered in plain HTTP (the second on OpenSSL 3.2+)."""


def _plain_http_answer(exc: requests.exceptions.SSLError) -> bool:
    """Whether the handshake failed because the server answered it in plain HTTP."""
    text = str(exc).upper()
    return any(code in text for code in _PLAIN_HTTP_REASONS)


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def transport_error(
    exc: requests.exceptions.RequestException,
    method: str,
    shown: str,
    attempts: int,
    *,
    timeout: float,
    api_url: str,
) -> TransportError:
    """The error for a request that got no HTTP answer (``timeout`` it waited, at ``api_url``)."""
    where: Dict[str, Any] = {"method": method, "url": shown, "attempts": attempts}
    if isinstance(exc, requests.exceptions.SSLError):
        if _plain_http_answer(exc) and api_url.startswith("https://"):
            plain = "http://" + api_url[len("https://") :]
            return TLSError(
                f"TLS failed for {method} {shown}: {reason(exc)}; the server seems to speak "
                f"plain HTTP, not HTTPS: use {plain}",
                **where,
            )
        return TLSError(
            f"TLS failed for {method} {shown}: {reason(exc)}; trust the server's CA with "
            "PREFECT_API_SSL_CERT_FILE or verify=<path>",
            **where,
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return RequestTimeoutError(
            f"{method} {shown} got no answer within {timeout:g}s ({_attempts(attempts)})",
            **where,
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        return ConnectionFailedError(
            f"cannot reach the Prefect API at {api_url} "
            f"({method} {shown}, {_attempts(attempts)}): {reason(exc)}",
            **where,
        )
    return TransportError(f"{method} {shown} failed: {reason(exc)}", **where)
