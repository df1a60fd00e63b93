"""Put the researcher's own ``conf/`` and ``experiments/`` on evsys's config search path, and
serve every config file of the evsys app from the node cache."""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath, SearchPathElement
from hydra.plugins.search_path_plugin import SearchPathPlugin

from evsys import paths
from evsys.compose.nodes import PROVIDER as REGISTRY_PROVIDER
from evsys.compose.stored import config_folder
from hydra_plugins.evsys_plugins.cached_sources import (
    CachedFileConfigSource,
    CachedPackageConfigSource,
)
from hydra_plugins.evsys_plugins.experiments_source import ExperimentsConfigSource
from hydra_plugins.evsys_plugins.registry_source import RegistryConfigSource


class EvsysSearchPathPlugin(SearchPathPlugin):
    """Order: the current directory's conf/ and experiments/ first (they add or override options),
    then Hydra's own configs, the bundled conf/ (Hydra's "main"), the bundled experiments/, the
    registry."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        bundled_conf = paths.config_dir()
        if not any(
            e.provider == "main" and config_folder(e.path) == str(bundled_conf)
            for e in search_path.get_path()
        ):
            return  # another Hydra app: leave it alone
        # The same folders and packages, read by sources that parse a file's text only once.
        for element in search_path.get_path():
            _serve_from_node_cache(element)
        bundled_experiments = paths.experiments_dir()
        search_path.append("evsys-experiments", ExperimentsConfigSource.url(bundled_experiments))
        # Registered extensions come last: a conf file extends them, never replaces them.
        search_path.append(REGISTRY_PROVIDER, f"{RegistryConfigSource.scheme()}://")

        user_conf, user_experiments = paths.project_config_folders()
        if user_experiments is not None:
            search_path.prepend(
                "project-experiments", ExperimentsConfigSource.url(user_experiments)
            )
        if user_conf is not None:
            search_path.prepend("project-conf", CachedFileConfigSource.url(user_conf))


_CACHED_SCHEMES = {"file": CachedFileConfigSource, "pkg": CachedPackageConfigSource}


def _serve_from_node_cache(element: SearchPathElement) -> None:
    """``file://`` (or a plain folder, as Hydra gives the primary config path) and ``pkg://``
    entries to the node-cached sources of the same folders."""
    scheme, found, where = element.path.partition("://")
    if not found:
        scheme, where = "file", element.path
    source = _CACHED_SCHEMES.get(scheme)
    if source is not None:
        element.path = f"{source.scheme()}://{where}"
