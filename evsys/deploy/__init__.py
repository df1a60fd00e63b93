"""Deployers: ship a trained run's adapter somewhere that serves it.

``evsys deploy <run dir> --to <kind> [key=value …]`` (or a config's ``deploy:`` section, for a
single run once it completed and for a sweep's best arm) builds the registered deployer ``kind``,
hands it the run's adapter and records what it returns (target, endpoint, model id, time) in the
run's ``run_result.json`` under ``deployments``. Built in: ``local`` (merged weights behind an
OpenAI-compatible server on this machine) and ``fireworks`` (the adapter uploaded to Fireworks and
a deployment created). A ``backend=tinker`` run's ``tinker://`` checkpoint is downloaded through
the tinker SDK and converted to a PEFT adapter first (evsys.deploy.tinker_adapter).
"""
