"""The ``fireworks`` deployer: the run's LoRA adapter uploaded to Fireworks and deployed.

Plain HTTP to Fireworks' documented REST API (no SDK to install), in the order its upload guide
gives: create the model (a ``HF_PEFT_ADDON`` on ``base_model``), get a signed upload URL per file,
upload each file there, validate the upload (polled while files are still landing), create a
deployment of the model (single-LoRA "live merge") and poll it until it is ``READY``.

The API key is read from the environment variable *named* by ``api_key_env`` when the deploy
starts: it is sent only to ``base_url`` (never to the signed upload URLs), and never written to
a record, a log line or an error message. Rate limits (429, honouring ``Retry-After``), server
errors and dropped connections are retried with exponential backoff; a rejected key fails at once.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.client import HTTPException
from pathlib import Path
from typing import Any

from pydantic import Field

from evsys.config import Strict
from evsys.deploy.protocol import Deployment, DeploySource
from evsys.errors import BackendError, ConfigError, Problem
from evsys.harness.openai_compatible import TRANSIENT_STATUS, TransientHTTPError
from evsys.harness.retry import call_with_retry
from evsys.registry import register_deployer

DEFAULT_BASE_URL = "https://api.fireworks.ai"
ACCOUNT_ENV = "FIREWORKS_ACCOUNT_ID"
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
_RESOURCE_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"
_FAILED_STATES = {"FAILED", "DELETING", "DELETED", "ERROR"}


@register_deployer("fireworks")
class FireworksDeployer:
    """A LoRA adapter on a Fireworks dedicated deployment, queried at its inference API."""

    class Config(Strict):
        base_model: str = Field(
            description="The Fireworks model the adapter was trained on, e.g. "
            "accounts/fireworks/models/qwen3-8b (the run's own model, as Fireworks names it)."
        )
        account_id: str | None = Field(
            None, description=f"Fireworks account id. None: ${ACCOUNT_ENV}."
        )
        api_key_env: str = Field(
            "FIREWORKS_API_KEY",
            description="NAME of the environment variable holding the API key (the key itself "
            "never goes in a config).",
        )
        base_url: str = Field(DEFAULT_BASE_URL, description="The control-plane API root.")
        inference_url: str | None = Field(
            None,
            description="The OpenAI-compatible root clients query, recorded as the endpoint. "
            "None: <base_url>/inference/v1.",
        )
        model_id: str | None = Field(
            None,
            pattern=_RESOURCE_ID,
            description="Id of the uploaded model in the account. None: from the run id.",
        )
        deployment_id: str | None = Field(
            None, pattern=_RESOURCE_ID, description="Id of the deployment. None: the model id."
        )
        accelerator_type: str | None = Field(
            None, description="e.g. NVIDIA_H100_80GB. None: Fireworks' default for the model."
        )
        accelerator_count: int | None = Field(None, ge=1, description="Accelerators per replica.")
        min_replicas: int | None = Field(None, ge=0, description="None: Fireworks' default.")
        max_replicas: int | None = Field(None, ge=1, description="None: Fireworks' default.")
        wait: bool = Field(
            True, description="Wait until the deployment is READY. False: record it as created."
        )
        timeout_s: float = Field(
            1800.0, gt=0, description="Longest wait for validation, then for READY."
        )
        poll_interval_s: float = Field(10.0, ge=0, description="Seconds between status polls.")
        request_timeout_s: float = Field(60.0, gt=0, description="Seconds to wait for a reply.")
        max_attempts: int = Field(5, ge=1, description="Tries per request, the first included.")
        backoff_s: float = Field(2.0, ge=0, description="Wait after a first failed try; doubles.")

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep, **params: Any):
        """``sleep`` is for tests: polls and backoffs wait through it."""
        self.cfg = self.Config(**params)
        self._sleep = sleep

    def deploy(self, source: DeploySource) -> Deployment:
        adapter_dir = source.peft_adapter()
        key, account = self._key(), self._account()
        files = adapter_files(adapter_dir)
        api = _Api(self.cfg, key, self._sleep)
        model_id = self.cfg.model_id or _resource_id(source.run_id)
        deployment_id = self.cfg.deployment_id or model_id
        prefix = f"/v1/accounts/{account}"

        # 1. the model: a PEFT addon on the base model, described by its adapter_config.json
        adapter = json.loads((adapter_dir / "adapter_config.json").read_text())
        model = api.call(
            "create the model",
            "POST",
            f"{prefix}/models",
            {
                "modelId": model_id,
                "model": {
                    "kind": "HF_PEFT_ADDON",
                    "displayName": source.run_id,
                    "peftDetails": {
                        "baseModel": self.cfg.base_model,
                        "r": adapter.get("r"),
                        "targetModules": sorted(adapter.get("target_modules") or []),
                    },
                },
            },
        )
        model_name = model.get("name") or f"accounts/{account}/models/{model_id}"

        # 2-3. a signed URL per file, then each file PUT there (without the key)
        sizes = {name: path.stat().st_size for name, path in files.items()}
        signed = (
            api.call(
                "get the upload URLs",
                "POST",
                f"{prefix}/models/{model_id}:getUploadEndpoint",
                {"filenameToSize": sizes, "enableResumableUpload": False},
            ).get("filenameToSignedUrls")
            or {}
        )
        missing = sorted(set(files) - set(signed))
        if missing:
            raise BackendError(f"Fireworks gave no upload URL for {', '.join(missing)}")
        for name, path in files.items():
            api.upload(name, signed[name], path.read_bytes())

        # 4. validation, which fails with FAILED_PRECONDITION until every file has landed
        self._until(
            "the upload to be validated",
            lambda: api.call(
                "validate the upload",
                "GET",
                f"{prefix}/models/{model_id}:validateUpload",
                still_pending=_files_still_landing,
            ),
        )

        # 5-6. the deployment, polled until it serves
        query = urllib.parse.urlencode({"deploymentId": deployment_id})
        created = api.call(
            "create the deployment", "POST", f"{prefix}/deployments?{query}", self._spec(model_name)
        )
        deployment_name = created.get("name") or f"accounts/{account}/deployments/{deployment_id}"
        state = created.get("state", "CREATING")
        if self.cfg.wait:
            state = self._until(
                "the deployment to be READY",
                lambda: _ready(api.call("poll", "GET", f"/v1/{deployment_name}")),
            )
        return Deployment(
            target="fireworks",
            endpoint=self.cfg.inference_url or f"{self.cfg.base_url.rstrip('/')}/inference/v1",
            model_id=f"{model_name}#{deployment_name}",
            status="running" if state == "READY" else state.lower(),
            details={
                "account": account,
                "model": model_name,
                "deployment": deployment_name,
                "state": state,
                "base_model": self.cfg.base_model,
                "uploaded": sorted(files),
            },
        )

    def _spec(self, model_name: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"baseModel": model_name}
        optional = {
            "acceleratorType": self.cfg.accelerator_type,
            "acceleratorCount": self.cfg.accelerator_count,
            "minReplicaCount": self.cfg.min_replicas,
            "maxReplicaCount": self.cfg.max_replicas,
        }
        return spec | {k: v for k, v in optional.items() if v is not None}

    def _until(self, what: str, poll: Callable[[], Any]) -> Any:
        """``poll()`` until it returns something other than None; BackendError after timeout_s."""
        deadline = time.monotonic() + self.cfg.timeout_s
        while True:
            result = poll()
            if result is not None:
                return result
            if time.monotonic() >= deadline:
                raise BackendError(f"gave up waiting for {what} after {self.cfg.timeout_s:g} s")
            self._sleep(self.cfg.poll_interval_s)

    def _key(self) -> str:
        key = os.environ.get(self.cfg.api_key_env, "").strip()
        if not key:
            raise ConfigError(
                Problem(
                    "api_key_env",
                    f"the environment variable {self.cfg.api_key_env} (the Fireworks API key) "
                    "is not set",
                    value=self.cfg.api_key_env,
                )
            )
        return key

    def _account(self) -> str:
        account = self.cfg.account_id or os.environ.get(ACCOUNT_ENV, "").strip()
        if not account:
            raise ConfigError(
                Problem("account_id", f"no Fireworks account: set account_id or ${ACCOUNT_ENV}")
            )
        return account


def adapter_files(adapter: Path) -> dict[str, Path]:
    """The files Fireworks takes for a LoRA addon: its config and its weights."""
    files = {name: adapter / name for name in _ADAPTER_FILES if (adapter / name).is_file()}
    if "adapter_config.json" not in files or len(files) < 2:
        raise ConfigError(
            Problem(
                "run_dir",
                f"{adapter} lacks adapter_config.json or adapter_model.safetensors",
                value=str(adapter),
            )
        )
    return files


def _ready(deployment: dict[str, Any]) -> str | None:
    state = str(deployment.get("state", ""))
    if state in _FAILED_STATES:
        status = deployment.get("status") or {}
        raise BackendError(f"the deployment is {state}: {status.get('message', 'no reason given')}")
    return state if state == "READY" else None


def _files_still_landing(code: int, body: str) -> bool:
    return code in (400, 412) and "FAILED_PRECONDITION" in body.upper()


def _resource_id(name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return slug[:63].rstrip("-") or "evsys-model"


class _Api:
    """JSON requests to the control plane with the key, retried when the failure is transient."""

    def __init__(self, cfg: FireworksDeployer.Config, key: str, sleep: Callable[[float], None]):
        self.cfg, self._key, self._sleep = cfg, key, sleep
        self.base = cfg.base_url.rstrip("/")

    def call(
        self,
        step: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        still_pending: Callable[[int, str], bool] | None = None,
    ) -> Any:
        """The decoded reply; None when ``still_pending(code, body)`` says to ask again later."""
        headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        raw = self._retried(step, lambda: self._send(request, still_pending))
        if raw is None:
            return None
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise BackendError(f"Fireworks: {step}: not a JSON reply: {raw[:200]!r}") from None

    def upload(self, name: str, url: str, data: bytes) -> None:
        headers = {
            "Content-Type": "application/octet-stream",
            "x-goog-content-length-range": f"{len(data)},{len(data)}",
        }
        request = urllib.request.Request(url, data, headers, method="PUT")
        self._retried(f"upload {name}", lambda: self._send(request, None))

    def _retried(self, step: str, send: Callable[[], bytes | None]) -> bytes | None:
        try:
            return call_with_retry(
                send,
                max_attempts=self.cfg.max_attempts,
                backoff_s=self.cfg.backoff_s,
                retry_if=lambda exc: isinstance(exc, TransientHTTPError),
                sleep=self._sleep,
            )
        except BackendError as exc:
            raise BackendError(self._scrub(f"Fireworks: could not {step}: {exc}")) from None

    def _send(
        self, request: urllib.request.Request, still_pending: Callable[[int, str], bool] | None
    ) -> bytes | None:
        where = f"{request.get_method()} {urllib.parse.urlsplit(request.full_url).path}"
        try:
            with urllib.request.urlopen(request, timeout=self.cfg.request_timeout_s) as reply:
                return reply.read()
        except urllib.error.HTTPError as exc:
            with exc:  # it holds the connection open until closed
                detail = exc.read()[:300].decode("utf-8", "replace").strip()
                if still_pending is not None and still_pending(exc.code, detail):
                    return None
                raise self._http_error(where, exc, detail) from None
        except (urllib.error.URLError, HTTPException, OSError) as exc:  # refused, reset, timeout
            reason = getattr(exc, "reason", exc)
            raise TransientHTTPError(f"{where}: {type(reason).__name__}: {reason}") from None

    def _http_error(self, where: str, exc: urllib.error.HTTPError, detail: str) -> BackendError:
        message = self._scrub(f"{where}: HTTP {exc.code} {exc.reason}: {detail}")
        if exc.code in TRANSIENT_STATUS or exc.code >= 500:
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            try:
                seconds = float(retry_after) if retry_after else None
            except ValueError:  # an HTTP date: fall back to the backoff schedule
                seconds = None
            return TransientHTTPError(message, retry_after=seconds)
        if exc.code in (401, 403):
            message += f" (check the API key in {self.cfg.api_key_env} and the account id)"
        return BackendError(message)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "<redacted>") if self._key else text
