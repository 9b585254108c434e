"""HTTP to STAC services, shared by the Sentinel-2 and Sentinel-1 readers.

Both read Planetary Computer (and Sentinel-2 also Earth Search), so both need the same three
things: a ``requests`` session that retries with backoff, a one-line error naming the host and
what failed, and Planetary Computer's anonymous URL signing. Their one home is here.

A SAS token lives about an hour and a long run outlives it: the signer renews it before its
expiry (the token answer's ``msft:expiry``, else the ``se=`` inside the token) and, through
:meth:`PlanetaryComputerSigner.renew`, whenever a read was refused with HTTP 403.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3 import Retry

from contract.errors import causes, first_line
from pipeline.errors import CredentialsError, ServiceError

log = logging.getLogger(__name__)

#: Planetary Computer's anonymous token endpoint, relative to the API's host.
SAS_TOKEN_PATH = "/api/sas/v1/token/{collection}"
#: a token is renewed this long before it expires, so no read starts with a dying one
TOKEN_MARGIN = dt.timedelta(minutes=5)
#: Token answers that mean "a key is needed" (Sentinel-1 RTC in 2023-24).
REFUSED = (401, 403)


class SigningOptions(Protocol):
    """What the signer needs of a reader's options (``StacOptions`` has it)."""

    @property
    def url(self) -> str: ...
    @property
    def collection(self) -> str: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def host(self) -> str: ...
    def retry(self) -> Retry: ...


def retrying_session(options: SigningOptions) -> requests.Session:
    """A session whose requests retry with the options' backoff (429, 5xx, lost connections)."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=options.retry())
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def service_error(exc: BaseException, host: str, what: str) -> ServiceError:
    """One line naming the host and what failed, from a requests/urllib3/pystac-client error."""
    for cur in causes(exc):
        if isinstance(cur, requests.Timeout) or "timed out" in str(cur).lower():
            return ServiceError(f"{host} did not answer in time while {what}; try again later")
        if isinstance(cur, requests.ConnectionError):
            return ServiceError(
                f"cannot reach {host} while {what} (network down, wrong "
                f"--stac-url, or the service is offline)"
            )
    status = getattr(exc, "status_code", None)
    detail = first_line(exc)
    if status is not None:
        return ServiceError(f"{host} answered HTTP {status} while {what}: {detail}")
    return ServiceError(f"{host} failed while {what}: {detail}")


class PlanetaryComputerSigner:
    """Appends Planetary Computer's anonymous SAS token of one collection to asset URLs.

    Safe to share between the threads that read assets: one token is fetched at a time. A
    service without the token endpoint (HTTP 404: a mirror) serves its assets unsigned.
    """

    def __init__(
        self, options: SigningOptions, clock: Callable[[], dt.datetime] | None = None
    ) -> None:
        parts = urlsplit(options.url)
        self.token_url = f"{parts.scheme}://{parts.netloc}" + SAS_TOKEN_PATH.format(
            collection=options.collection
        )
        self.session = retrying_session(options)
        self.unsigned = False  # the service has no token endpoint: assets are public
        self._options = options
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._token: str | None = None
        self._expiry: dt.datetime | None = None
        self._lock = threading.Lock()

    def probe(self) -> int:
        """Ask for a token once; the HTTP status: 200 a token is held, 404 no signing is
        needed, 401/403 a key is needed. Other answers and network failures are errors."""
        try:
            resp = self.session.get(self.token_url, timeout=self._options.timeout_s)
            if resp.status_code == 200:
                body = resp.json()
                token = str(body["token"])
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise service_error(
                exc, self._options.host, f"getting a URL token from {self.token_url}"
            ) from exc
        if resp.status_code == 200:
            self._token, self._expiry = token, _token_expiry(body, token)
            log.debug("Planetary Computer token fetched, expires %s", self._expiry)
        elif resp.status_code == 404:
            log.info("%s: no token endpoint; asset URLs are read unsigned", self.token_url)
            self.unsigned = True
        elif resp.status_code not in REFUSED:
            raise ServiceError(f"{self.token_url} answered HTTP {resp.status_code} for a token")
        return resp.status_code

    def token(self) -> str | None:
        """The current token (None when assets need none), fetched anew when none is held or
        it expires within :data:`TOKEN_MARGIN`."""
        with self._lock:
            if self.unsigned:
                return None
            if self._token is None or (
                self._expiry is not None and self._clock() >= self._expiry - TOKEN_MARGIN
            ):
                self._token = None
                status = self.probe()
                if status in REFUSED:
                    raise CredentialsError(f"{self.token_url} refused a token (HTTP {status})")
            return self._token

    def renew(self, seen: str | None = None) -> None:
        """Forget the token after a read was refused (HTTP 403): the next URL is signed with a
        fresh one. With ``seen`` (the token the read used), only if no other thread has
        renewed it since."""
        with self._lock:
            if seen is None or self._token == seen:
                self._token = None

    def __call__(self, href: str) -> str:
        token = self.token()
        return href if token is None else f"{href}{'&' if '?' in href else '?'}{token}"


def _token_expiry(body: dict[str, Any], token: str) -> dt.datetime | None:
    """When a SAS token expires: the answer's ``msft:expiry``, else the token's ``se=``."""
    text = body.get("msft:expiry") or next((v for k, v in parse_qsl(token) if k == "se"), None)
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
