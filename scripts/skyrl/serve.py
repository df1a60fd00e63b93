"""SkyRL 0.4.0's Tinker API server (JAX backend, CPU) with the three shims tinker 0.38 needs.

    python scripts/skyrl/serve.py --base-model <model_dir> --backend jax --port 8000 …
    (in SkyRL's environment; every argument goes to skyrl.tinker.api)

1. SkyRL starts its engine with ``uv run``, re-using the flags of a ``uv run`` parent; here the
   engine runs with this interpreter instead.
2. tinker 0.38 needs ``sample_sequence_ids`` (one per sample) in the ``/asample`` promise.
3. tinker 0.38 finishes its session with ``POST /api/v1/sessions/{id}/finish``: a no-op here.
"""

from __future__ import annotations

import argparse
import sys

import skyrl.tinker.api as api
import uvicorn
from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from skyrl.tinker.config import EngineConfig, add_model, config_to_argv
from skyrl.utils.log import get_uvicorn_log_config


def _engine_command(parent_cmd: list[str], engine_config: object) -> list[str]:
    return [sys.executable, "-m", "skyrl.tinker.engine", *config_to_argv(engine_config)]


_asample = api.asample


async def _asample_with_sequence_ids(
    request: api.SampleRequest,
    req: Request,
    session=Depends(api.get_session),  # noqa: B008 (FastAPI's dependency injection)
) -> JSONResponse:
    promise = (await _asample(request, req, session)).model_dump()
    ids = [f"{promise['request_id']}-{i}" for i in range(request.num_samples)]
    return JSONResponse({**promise, "sample_sequence_ids": ids})


async def _finish_session(session_id: str) -> dict:
    return {}


def main() -> None:
    api._build_uv_run_cmd_engine = _engine_command
    api.app.router.routes[:] = [
        r for r in api.app.router.routes if getattr(r, "path", None) != "/api/v1/asample"
    ]
    api.app.post("/api/v1/asample")(_asample_with_sequence_ids)
    api.app.post("/api/v1/sessions/{session_id}/finish")(_finish_session)

    # What `python -m skyrl.tinker.api` does, on the patched app.
    parser = argparse.ArgumentParser(description="SkyRL tinker API server, shimmed for tinker 0.38")
    add_model(parser, EngineConfig)
    parser.add_argument("--host", type=str, default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    fields = {k: v for k, v in vars(args).items() if k in EngineConfig.model_fields}
    api.app.state.engine_config = EngineConfig.model_validate(fields)
    uvicorn.run(api.app, host=args.host, port=args.port, log_config=get_uvicorn_log_config())


if __name__ == "__main__":
    main()
