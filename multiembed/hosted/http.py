"""The one HTTP client every hosted provider goes through: timeouts, retries, one-line errors.

Providers differ in request and response shapes, not in how a request should fail. Here, once:
429 and 5xx (and dropped connections) are retried with exponential backoff, honouring the server's
``Retry-After``; any other refusal becomes a one-line :class:`BackendError` carrying the provider's
own message (bad key, quota, unknown model). The API key is only ever put in a header: it is
removed from every message this module produces, so it cannot reach a log or a traceback.
Standard-library ``urllib`` keeps hosted APIs free of SDKs and extra dependencies.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from multiembed.errors import BackendError, ConfigError

logger = logging.getLogger(__name__)

#: statuses worth another try: rate limits and the server's own trouble
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529})
#: longest single wait, whatever Retry-After asks for (a run should not hang for an hour)
MAX_WAIT_S = 60.0


class RequestRejected(BackendError):
    """The provider refused one request (4xx other than rate limits): retrying would not help.

    ``status`` lets callers tell an item's fault (400, 413, 422: isolate the item) from the
    account's (401, 403, 404: stop the run).
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: either a number of seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _first_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.strip().split())
    return line[:limit] + ("..." if len(line) > limit else "")


@dataclass
class HttpClient:
    """POSTs JSON to one provider; ``message_of`` pulls the provider's error text out of a body."""

    provider: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 60.0
    max_retries: int = 5
    backoff: float = 0.5
    message_of: Callable[[Any], str | None] = lambda body: None
    #: the status a refusal counts as, given the decoded error body (an API may answer a bad key with 400)
    status_of: Callable[[int, Any], int] = lambda status, body: status
    #: strings never to show in a message (the API key)
    secrets: tuple[str, ...] = ()
    #: how long to wait between tries; tests and callers may replace it
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigError(f"max_retries must be a whole number >= 0, got {self.max_retries!r}")
        if not self.timeout or self.timeout <= 0:
            raise ConfigError(f"timeout must be a number of seconds > 0, got {self.timeout!r}")

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _provider_message(self, raw: bytes) -> str:
        text = raw.decode("utf-8", "replace")
        try:
            message = self.message_of(json.loads(text))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            message = None
        return self._clean(_first_line(message or text or "no details"))

    def _refusal_status(self, status: int, raw: bytes) -> int:
        try:
            return self.status_of(status, json.loads(raw.decode("utf-8", "replace")))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return status

    def post(self, url: str, payload: Any) -> Any:
        """The decoded JSON answer to ``payload``, after as many retries as rate limits need."""
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json", **self.headers}
        attempt = 0
        while True:
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            wait: float | None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    body = response.read()
                try:
                    return json.loads(body)
                except ValueError:
                    text = self._clean(_first_line(body.decode("utf-8", "replace")))
                    raise BackendError(f"{self.provider}: {url} answered with no JSON: {text}") from None
            except urllib.error.HTTPError as error:
                status = error.code
                raw = error.read() or b""
                message = self._provider_message(raw)
                if status not in RETRY_STATUSES:
                    raise RequestRejected(
                        f"{self.provider}: HTTP {status} from {url}: {message}",
                        self._refusal_status(status, raw),
                    ) from None
                wait = retry_after_seconds(error.headers.get("Retry-After"))
                why = f"HTTP {status}: {message}"
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                reason = getattr(error, "reason", error)
                wait, why = None, f"{type(reason).__name__}: {reason}"
            if attempt >= self.max_retries:
                raise BackendError(
                    f"{self.provider}: {url} still failing after {attempt + 1} tries ({why})"
                ) from None
            if wait is None:
                wait = self.backoff * (2**attempt) * (1 + random.random() / 4)
            wait = min(wait, MAX_WAIT_S)
            logger.info("%s: %s; retrying in %.1f s", self.provider, self._clean(why), wait)
            self.sleep(wait)
            attempt += 1
