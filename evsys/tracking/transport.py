"""HTTP to the dashboard with ``urllib``: JSON in, JSON out, every failure one of our errors."""

from __future__ import annotations

import http.client
import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from evsys.tracking.errors import DashboardClientError, EvsysAuthError, ServiceUnreachable
from evsys.tracking.wire import API_PREFIX

T = TypeVar("T")


class Transport:
    """Requests under ``<api_url>/api/dashboard/api`` with the key as a bearer token."""

    def __init__(self, api_url: str, api_key: str | None, timeout: float = 10.0):
        self.api_url, self.api_key, self.timeout = api_url.rstrip("/"), api_key, timeout

    def url(self, path: str, query: dict[str, Any] | None = None) -> str:
        params = {k: v for k, v in (query or {}).items() if v is not None}
        suffix = f"?{urllib.parse.urlencode(params)}" if params else ""
        return f"{self.api_url}{API_PREFIX}{path}{suffix}"

    def json(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        data = None if body is None else json.dumps(body, allow_nan=True).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        url = self.url(path, query)
        return _decode(self._exchange(method, url, data, headers, timeout, lambda a: a.read()))

    def whoami(self, project_id: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        """``GET /sdk/whoami``: the key's project. ``EvsysAuthError`` for a rejected key, or a
        key of another project than ``project_id`` (an id or a name) when one is given."""
        try:
            query = {"project_id": project_id}
            project = self.json("GET", "/sdk/whoami", query=query, timeout=timeout)
        except EvsysAuthError as exc:
            raise EvsysAuthError(
                f"the service rejected the API key: {exc.detail}", exc.status
            ) from None
        if project_id and project_id not in (
            project.get("project_id"),
            project.get("project_name"),
        ):
            raise EvsysAuthError(
                f"EVSYS_PROJECT_ID={project_id!r} but the key belongs to project "
                f"{project.get('project_name')!r} ({project.get('project_id')})",
                403,
            )
        return project

    def post_lines(self, path: str, lines: list[str]) -> Any:
        """``POST {"writes": [...]}`` from writes already encoded as mirror lines."""
        body = ('{"writes":[' + ",".join(line.rstrip("\n") for line in lines) + "]}").encode()
        headers = {"Content-Type": "application/json"}
        read = self._exchange("POST", self.url(path), body, headers, None, lambda a: a.read())
        return _decode(read)

    def upload(self, path: str, fields: dict[str, str], file: Path) -> Any:
        """A multipart POST of ``fields`` and one file (read whole: uploads are datasets)."""
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        ]
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{file.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        body = "".join(parts).encode() + head.encode() + file.read_bytes()
        body += f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        read = self._exchange("POST", self.url(path), body, headers, None, lambda a: a.read())
        return _decode(read)

    def download(self, path: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".partial")

        def save(answer: Any) -> None:
            with partial.open("wb") as f:
                shutil.copyfileobj(answer, f)

        self._exchange("GET", self.url(path), None, {}, None, save)
        partial.replace(dest)  # a cut download never looks complete
        return dest

    def _exchange(self, method, url, data, headers, timeout, read: Callable[[Any], T]) -> T:
        """One request; ``read`` consumes the answer. Every failure becomes one of our errors."""
        if self.api_key:
            headers = {**headers, "Authorization": f"Bearer {self.api_key}"}
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as answer:
                return read(answer)
        except urllib.error.HTTPError as exc:
            raise _http_error(exc) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            # OSError covers refused and reset connections and timeouts, also mid-answer
            reason = getattr(exc, "reason", None) or exc
            raise ServiceUnreachable(f"{self.api_url} does not answer ({reason})") from None


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise DashboardClientError(f"the answer is not JSON: {raw[:200]!r}") from None


def _http_error(exc: urllib.error.HTTPError) -> DashboardClientError:
    try:
        body = exc.read()
    except OSError:
        body = b""
    finally:
        exc.close()
    try:
        detail = json.loads(body).get("detail", body.decode(errors="replace"))
    except (ValueError, AttributeError):
        detail = body.decode(errors="replace")[:500] or exc.reason
    text = detail if isinstance(detail, str) else json.dumps(detail)
    if exc.code >= 500:
        return ServiceUnreachable(text, exc.code)
    if exc.code in (401, 403):
        return EvsysAuthError(text, exc.code)
    return DashboardClientError(text, exc.code)
