"""Put the researcher's own ``conf/`` and ``experiments/`` on evsys's config search path."""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from evsys import paths
from evsys.compose.nodes import PROVIDER as REGISTRY_PROVIDER
from hydra_plugins.evsys_plugins.experiments_source import ExperimentsConfigSource
from hydra_plugins.evsys_plugins.registry_source import RegistryConfigSource


class EvsysSearchPathPlugin(SearchPathPlugin):
    """Order: the current directory's conf/ and experiments/ first (they add or override options),
    then the bundled conf/ (Hydra's "main"), the bundled experiments/, the registry."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        bundled_conf = paths.config_dir()
        if not any(
            e.provider == "main" and e.path.removeprefix("file://") == str(bundled_conf)
            for e in search_path.get_path()
        ):
            return  # another Hydra app: leave it alone
        bundled_experiments = paths.experiments_dir()
        search_path.append("evsys-experiments", ExperimentsConfigSource.url(bundled_experiments))
        # Registered extensions come last: a conf file extends them, never replaces them.
        search_path.append(REGISTRY_PROVIDER, f"{RegistryConfigSource.scheme()}://")

        cwd = Path.cwd().resolve()
        user_experiments, user_conf = cwd / "experiments", cwd / "conf"
        if user_experiments.is_dir() and user_experiments != bundled_experiments:
            search_path.prepend(
                "project-experiments", ExperimentsConfigSource.url(user_experiments)
            )
        if user_conf.is_dir() and user_conf != bundled_conf:
            search_path.prepend("project-conf", f"file://{user_conf}")
