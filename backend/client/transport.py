"""HTTP to a TrajMaster server with the standard library only (urllib, json), so that it runs in
Blender's own Python with nothing installed. Every failure becomes one ServerError sentence
that says what to do; the token never appears in one."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_TIMEOUT_S = 30.0
API = "/v1"


class ServerError(Exception):
    """A request that did not succeed. `code` is the server's (docs/server.md) or one of the
    client's own: unreachable, timeout, bad_url, bad_token_file, not_a_server, connection_lost,
    bad_download; `status` is the HTTP status when there was one."""

    def __init__(self, code: str, message: str, hint: str | None = None, status: int | None = None):
        super().__init__(message)
        self.code, self.message, self.hint, self.status = code, message, hint, status

    def __str__(self) -> str:
        return self.message + (f" ({self.hint})" if self.hint else "")


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The token in a token file (its first line), or ServerError."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.readline(4096).strip()
    except FileNotFoundError:
        raise ServerError("bad_token_file", f"There is no token file at {path}; ask for the server's token.") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not text"
        raise ServerError("bad_token_file", f"The token file {path} cannot be read ({reason}).") from None
    if not token:
        raise ServerError("bad_token_file", f"The token file {path} is empty; ask for the server's token.")
    return token


def normalize_url(url: str) -> str:
    """'host:8765' or 'http://host:8765/' -> 'http://host:8765' (a path prefix is kept)."""
    text = (url or "").strip()
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServerError("bad_url", f"{url!r} is not a server address; use http://HOST:PORT.")
    if "@" in parts.netloc:
        # A password in the address would end up in sidecars, messages and logs: the token has its own place.
        raise ServerError(
            "bad_url",
            "The server address contains a user name or password; give the address alone and the token apart.",
        )
    try:
        parts.port  # noqa: B018  (raises for a port that is not a number)
    except ValueError:
        raise ServerError("bad_url", f"{url!r} has a port that is not a number; use http://HOST:PORT.") from None
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class Transport:
    def __init__(self, url: str, token: str, timeout: float = DEFAULT_TIMEOUT_S, token_source: str = "the token"):
        self.url = normalize_url(url)
        self._token = token
        self.timeout = timeout
        self._token_source = token_source

    def address(self, path: str, query: dict[str, Any] | None = None) -> str:
        quoted = urllib.parse.quote(API + path)
        return self.url + quoted + (f"?{urllib.parse.urlencode(query)}" if query else "")

    def open(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        """Send a request; the response (2xx) to read, or ServerError."""
        data = None
        headers = {**(headers or {}), "Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if body is not None:
            data = json.dumps(body, allow_nan=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.address(path, query), data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            raise self._refusal(exc) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise self.network_error(exc) from None

    def call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """A request whose answer is JSON (None for an empty answer)."""
        with self.open(method, path, query=query, body=body, headers=headers) as response:
            try:
                raw = response.read()
            except (OSError, http.client.HTTPException) as exc:
                raise self.network_error(exc) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise self._not_a_server() from None

    # ------------------------------------------------------------ failures as sentences

    def network_error(self, exc: BaseException) -> ServerError:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return ServerError(
                "timeout", f"The server at {self.url} did not answer in time; it may be overloaded or unreachable."
            )
        if isinstance(reason, socket.gaierror):
            return ServerError("unreachable", f"The server name in {self.url} could not be found; check the address.")
        if isinstance(reason, ssl.SSLError):
            return ServerError(
                "unreachable",
                f"A secure connection to {self.url} failed ({getattr(reason, 'reason', None) or 'TLS error'}); "
                "check the address and the server's certificate.",
            )
        if isinstance(reason, ConnectionRefusedError):
            return ServerError(
                "unreachable",
                f"The server at {self.url} is not answering (connection refused); check the address and that the "
                "server is running.",
            )
        if isinstance(reason, (ConnectionError, http.client.HTTPException)):
            return ServerError("connection_lost", f"The connection to the server at {self.url} was lost.")
        text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        return ServerError("unreachable", f"The server at {self.url} cannot be reached ({text}).")

    def _refusal(self, exc: urllib.error.HTTPError) -> ServerError:
        try:
            body = json.loads(exc.read(65536) or b"null")
        except (ValueError, OSError):
            body = None
        finally:
            exc.close()
        if exc.code == 401:
            return ServerError(
                "unauthorized",
                f"The server at {self.url} did not accept {self._token_source}; use the token in the server's "
                "token file.",
                status=401,
            )
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return ServerError(str(body.get("code", "refused")), body["message"], body.get("hint"), status=exc.code)
        return ServerError(
            "not_a_server",
            f"The server at {self.url} answered {exc.code} {exc.reason}; is a TrajMaster server running there?",
            status=exc.code,
        )

    def _not_a_server(self) -> ServerError:
        return ServerError(
            "not_a_server", f"The server at {self.url} did not answer like a TrajMaster server; check the address."
        )
