"""HTTP for the footprint and boundary services: retries with backoff, clear errors, range reads.

Public services fail in ordinary ways: they are unreachable, rate-limit (429), time out behind a
gateway (502-504) or cut a download short. Each of those is retried with exponential backoff
(honouring ``Retry-After``, capped at :data:`MAX_WAIT_S`); what still fails becomes a
:class:`ServiceError` of one line that names the service, the address and what happened.
``requests`` is the client (already a dependency); one session per thread, since the Overture
reader fetches files in parallel.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from contract.errors import causes
from damagenet import __version__
from damagenet.errors import DamagenetError

log = logging.getLogger(__name__)
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
USER_AGENT = f"damagenet/{__version__} (building damage per footprint; python-requests)"
#: longest wait between tries, whatever a server's Retry-After asks
MAX_WAIT_S = 60.0


class ServiceError(DamagenetError, RuntimeError):
    """A web service that could not give a usable answer (after retries where they help)."""


class RetryableAnswer(Exception):
    """An answer that arrived but is worth asking again for: cut short, not the format asked
    for (an error page from a proxy), or Overpass' "runtime error" remark."""


@dataclass
class Client:
    """One service: its name for messages, how many tries, how long to wait between them."""

    service: str
    tries: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 120.0
    bytes_read: int = 0
    requests_sent: int = 0
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def session(self) -> requests.Session:
        """This thread's session (``requests`` sessions are not shared across threads)."""
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
            self._local.session.headers["User-Agent"] = USER_AGENT
        return self._local.session

    def call(self, method: str, url: str, parse: Callable[[requests.Response], Any], **kw) -> Any:
        """Send a request and parse the answer, retrying what a retry can fix."""
        last = ""
        for attempt in range(1, self.tries + 1):
            wait = self.backoff_s * 2 ** (attempt - 1)
            try:
                resp = self.session.request(method, url, timeout=self.timeout_s, **kw)
                self._count(resp)
                if resp.status_code not in RETRY_STATUS:
                    return self._answer(method, url, resp, parse)
                last = f"HTTP {resp.status_code} {_reason(resp)}"
                wait = max(wait, _retry_after(resp))
            except requests.Timeout:
                last = f"no answer within {self.timeout_s:g} s"
            except requests.exceptions.ChunkedEncodingError as exc:
                last = f"download cut short ({_root(exc)})"
            except requests.ConnectionError as exc:
                last = f"unreachable ({_root(exc)})"
            except RetryableAnswer as exc:
                last = str(exc)
            if attempt < self.tries:
                wait = min(wait, MAX_WAIT_S)
                log.warning(
                    "%s: %s; try %d of %d in %.1f s",
                    self.service,
                    last,
                    attempt + 1,
                    self.tries,
                    wait,
                )
                time.sleep(wait)
        tries = "once" if self.tries == 1 else f"{self.tries} times"
        raise ServiceError(f"{self.service}: {method} {url} failed {tries}: {last}")

    def _count(self, resp: requests.Response) -> None:
        with self._lock:
            self.requests_sent += 1
            self.bytes_read += len(resp.content)

    def _answer(self, method: str, url: str, resp: requests.Response, parse: Callable) -> Any:
        if resp.status_code >= 400:  # 4xx other than 429: asking again gives the same answer
            raise ServiceError(
                f"{self.service}: {method} {url} answered HTTP {resp.status_code} {_reason(resp)}"
            )
        return parse(resp)

    def get_json(self, url: str, **kw) -> Any:
        return self.call("GET", url, lambda r: json_answer(url, r), **kw)


def json_answer(url: str, resp: requests.Response) -> Any:
    """The answer as JSON; a body that does not parse was cut short or is an error page."""
    body = checked_content(url, resp)
    try:
        return json.loads(body)
    except ValueError as exc:
        head = body[:80].decode("utf-8", "replace").replace("\n", " ")
        raise RetryableAnswer(f"answer from {url} is not JSON ({exc}; starts '{head}')") from exc


def checked_content(url: str, resp: requests.Response) -> bytes:
    """The body, refused when shorter than the Content-Length the server announced."""
    body = resp.content
    want = resp.headers.get("Content-Length")
    if want is not None and resp.headers.get("Content-Encoding") is None and int(want) != len(body):
        raise RetryableAnswer(f"{url}: got {len(body)} of {want} bytes")
    return body


def _reason(resp: requests.Response) -> str:
    text = " ".join(resp.text[:160].split())
    return f"({resp.reason}: {text})" if text else f"({resp.reason})"


def _retry_after(resp: requests.Response) -> float:
    try:
        return float(resp.headers.get("Retry-After", 0))
    except ValueError:  # an HTTP date: wait the usual backoff
        return 0.0


def _root(exc: BaseException) -> str:
    """The innermost cause of a requests/urllib3 error, in a few words."""
    *_, exc = causes(exc)  # the innermost
    text = " ".join(str(exc).split())
    if "Errno" in text:  # "...: [Errno 111] Connection refused" -> the errno part
        text = text[text.index("[Errno") :]
    return f"{type(exc).__name__}: {text[:120]}"


class RangeFile(io.RawIOBase):
    """A remote file read through HTTP range requests, so pyarrow reads only what it needs."""

    def __init__(self, client: Client, url: str, size: int) -> None:
        super().__init__()
        self.client, self.url, self.size, self.pos = client, url, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def read(self, size: int | None = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self.pos + size)
        if end <= self.pos:
            return b""
        start, want = self.pos, end - self.pos

        def parse(resp: requests.Response) -> bytes:
            body = resp.content
            if resp.status_code == 200:
                raise ServiceError(
                    f"{self.client.service}: {self.url} ignores HTTP Range requests (it sent "
                    f"the whole file); a mirror must serve byte ranges"
                )
            if resp.status_code != 206 or len(body) != want:
                raise RetryableAnswer(
                    f"{self.url}: range {start}-{end - 1} answered HTTP {resp.status_code} "
                    f"with {len(body)} of {want} bytes"
                )
            return body

        headers = {"Range": f"bytes={start}-{end - 1}"}
        data: bytes = self.client.call("GET", self.url, parse, headers=headers)
        self.pos = end
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
