"""The ``fireworks`` deployer: the run's LoRA adapter uploaded to Fireworks and deployed.

Plain HTTP to Fireworks' documented REST API (no SDK to install), in the order its upload guide
gives: create the model (a ``HF_PEFT_ADDON`` on ``base_model``), get a signed upload URL per file,
upload each file there, validate the upload (polled while files are still landing), create a
deployment of the model (single-LoRA "live merge") and poll it until it is ``READY``.

The API key is read from the environment variable *named* by ``api_key_env`` when the deploy
starts: it is sent only to ``base_url`` (never to the signed upload URLs), and never written to
a record, a log line or an error message. Rate limits (429, honouring ``Retry-After``), server
errors and dropped connections are retried with exponential backoff; anything else (a rejected
key, "already exists") fails at once (evsys.deploy.fireworks_api).

Deploying a run again reuses the model and deployment it made, or replaces them when its files
changed (evsys.deploy.fireworks_resources); a deploy that fails removes what it created, and names
what it could not remove (evsys.deploy.cleanup).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from evsys.config import Strict
from evsys.deploy.cleanup import Undo
from evsys.deploy.fireworks_api import FireworksApi
from evsys.deploy.fireworks_resources import FireworksResources, display_name, upload_mark
from evsys.deploy.protocol import Deployment, DeploySource
from evsys.errors import BackendError, ConfigError, Problem
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
        if "://" in source.checkpoint:  # downloaded by peft_adapter(): only once these are set
            self._key(), self._account()
        adapter_dir = source.peft_adapter()
        key, account = self._key(), self._account()
        files = adapter_files(adapter_dir)
        api = FireworksApi(
            base_url=self.cfg.base_url,
            key=key,
            key_env=self.cfg.api_key_env,
            request_timeout_s=self.cfg.request_timeout_s,
            max_attempts=self.cfg.max_attempts,
            backoff_s=self.cfg.backoff_s,
            sleep=self._sleep,
        )
        model_id = self.cfg.model_id or _resource_id(source.run_id)
        deployment_id = self.cfg.deployment_id or model_id
        prefix = f"/v1/accounts/{account}"
        # A failed deploy removes what it created (the deployment, then the model); what it
        # cannot remove is named, with how to remove it, in the error.
        undo = Undo("fireworks")
        fireworks = FireworksResources(api, account, undo, self._until)

        def upload() -> None:
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

        with undo:
            # 1. the model: a PEFT addon on the base model, described by its adapter_config.json
            # and marked with the run and the files' digest, so that a re-deploy recognises it
            adapter = json.loads((adapter_dir / "adapter_config.json").read_text())
            spec = {
                "kind": "HF_PEFT_ADDON",
                "displayName": display_name(source.run_id),
                "peftDetails": {
                    "baseModel": self.cfg.base_model,
                    "r": adapter.get("r"),
                    "targetModules": sorted(adapter.get("target_modules") or []),
                },
            }
            mark = upload_mark(source.run_id, adapter_digest(files))
            model = fireworks.model(model_id, source.run_id, mark, spec, upload, deployment_id)
            # Names and paths are this deployer's own, never taken from a reply's body.
            model_name = f"accounts/{account}/models/{model_id}"

            # 5-6. the deployment, polled until it serves
            deployment = fireworks.deployment(deployment_id, model_name, self._spec(model_name))
            deployment_name = f"accounts/{account}/deployments/{deployment_id}"
            state = str(deployment.resource.get("state") or "CREATING")
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
                "reused": [
                    what
                    for what, outcome in (("model", model), ("deployment", deployment))
                    if outcome.reused
                ],
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


def adapter_digest(files: dict[str, Path]) -> str:
    """SHA-256 over the files' names and contents: what tells one upload from another."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{files[name].stat().st_size}\0".encode())
        with open(files[name], "rb") as content:
            for block in iter(lambda: content.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _resource_id(name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return slug[:63].rstrip("-") or "evsys-model"
