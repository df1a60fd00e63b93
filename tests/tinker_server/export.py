"""External weights exports of the test server: ``save_weights_external`` and the signed URLs
``RestClient.get_external_weights_urls`` hands out, as tinker 0.38 downloads weights.

An export is the run's weights as a Tinker LoRA adapter: the server trains every parameter (see
engine.py), so the adapter of each linear layer is the best rank-``r`` factorisation of how far
training moved it from the base (a truncated SVD), stored the way Tinker exports adapters: named
after the module under ``base_model.model.``, ``lora_A`` ``(r, in)`` and ``lora_B`` ``(out, r)``,
with ``r`` and ``lora_alpha`` (= ``r``: scale 1) in ``adapter_config.json``.

Files are served at signed URLs on another origin than the API (``localhost`` rather than
``127.0.0.1``) that need no key and expire. Tests steer what goes wrong: ``refuse_urls`` (an
HTTP status for the URL request), ``tamper`` (rewrite the file names and bytes before signing),
``truncate`` (names whose body stops half way), ``url_ttl_s`` (negative: already expired) and
``redirect_to`` (an origin the signed URLs redirect to, once).
``downloads`` records every fetch of a signed URL with its headers (names in lower case).
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file


def lora_adapter(base: Any, trained: Any, rank: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(adapter_config, tensors) of ``trained`` relative to ``base``, in Tinker's layout."""
    base_linear = dict(base.named_modules())
    tensors: dict[str, torch.Tensor] = {}
    for name, module in trained.named_modules():
        if not isinstance(module, torch.nn.Linear) or name == "lm_head":
            continue  # the tiny model ties its unembedding to the embedding: left untrained
        delta = (module.weight - base_linear[name].weight).detach().float()
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        k = min(rank, s.numel())
        lora_a = torch.zeros(rank, delta.shape[1])
        lora_b = torch.zeros(delta.shape[0], rank)
        lora_a[:k] = s[:k].sqrt()[:, None] * vh[:k]
        lora_b[:, :k] = u[:, :k] * s[:k].sqrt()
        tensors[f"base_model.model.{name}.lora_A.weight"] = lora_a.contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = lora_b.contiguous()
    config = {"r": rank, "lora_alpha": rank, "peft_type": "LORA", "train_unembed": False}
    return config, tensors


@dataclass
class Exports:
    root: Path
    origin: str = ""
    """``http://localhost:<port>``: where signed URLs point (set by the server)."""
    url_ttl_s: float = 600.0
    refuse_urls: int | None = None
    tamper: Callable[[dict[str, bytes]], dict[str, Any]] | None = None
    truncate: set[str] = field(default_factory=set)
    redirect_to: str | None = None
    downloads: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    _signed: dict[str, tuple[str, bytes, float]] = field(default_factory=dict)

    def directory(self, run_id: str, name: str) -> Path:
        return self.root / run_id.replace(":", "_") / "external_weights" / name

    def save(self, run_id: str, name: str, base: Any, trained: Any, rank: int) -> dict[str, Any]:
        config, tensors = lora_adapter(base, trained, rank)
        where = self.directory(run_id, name)
        where.mkdir(parents=True, exist_ok=True)
        (where / "adapter_config.json").write_text(json.dumps(config))
        save_file(tensors, str(where / "adapter_model.safetensors"))
        size = sum(p.stat().st_size for p in where.iterdir())
        path = f"tinker://{run_id}/external_weights/{name}"
        return {"path": path, "size_bytes": size, "type": "save_weights_external"}

    def urls(self, run_id: str, name: str) -> tuple[int, Any]:
        if self.refuse_urls is not None:
            return self.refuse_urls, {"detail": "checkpoint access denied"}
        where = self.directory(run_id, name)
        if not where.is_dir():
            return 404, {"detail": f"no external weights {name} in {run_id}"}
        files: dict[str, Any] = {p.name: p.read_bytes() for p in sorted(where.iterdir())}
        if self.tamper is not None:
            files = self.tamper(files)
        expires = time.time() + self.url_ttl_s
        urls = {}
        for file_name, content in files.items():
            token = secrets.token_hex(8)
            self._signed[token] = (str(file_name), bytes(content), expires)
            urls[file_name] = f"{self.origin}/signed/{token}?X-Expires={int(expires)}&sig=x"
        when = datetime.fromtimestamp(expires, UTC).isoformat()
        return 200, {"urls": urls, "expires": when}

    def delete(self, run_id: str, checkpoint_id: str) -> tuple[int, Any]:
        kind, _, name = checkpoint_id.partition("/")
        if kind != "external_weights":
            return 400, {"detail": "this server deletes only external weights"}
        shutil.rmtree(self.directory(run_id, name), ignore_errors=True)
        self.deleted.append(f"tinker://{run_id}/{checkpoint_id}")
        return 200, {}

    def fetch(self, token: str, headers: dict[str, str]) -> tuple[int, bytes, bool, str | None]:
        """(status, body, truncated, redirect location) of a signed URL."""
        signed = self._signed.get(token)
        if signed is None:
            return 404, b'{"detail": "no such object"}', False, None
        name, content, expires = signed
        headers = {k.lower(): v for k, v in headers.items()}
        self.downloads.append((name, headers))
        if self.redirect_to and not self.redirect_to.endswith(f"//{headers.get('host')}"):
            return 302, b"", False, f"{self.redirect_to}/signed/{token}"
        if time.time() > expires:
            return 403, b'{"detail": "Request has expired"}', False, None
        return 200, content, name in self.truncate, None
