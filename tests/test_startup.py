"""What keeps start-up cheap: the group-node cache and the imports each command leaves out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evsys import registry
from evsys.compose import nodes

PROBE = """
import sys, runpy
sys.argv = {argv!r}
try:
    runpy.run_module({module!r}, run_name="__main__")
except SystemExit:
    pass
print("LOADED:" + ",".join(m for m in {watched!r} if m in sys.modules))
"""


def loaded_modules(module: str, argv: list[str], watched: tuple[str, ...], cwd: Path) -> list[str]:
    """Which of ``watched`` running ``module`` with ``argv`` imported (in a fresh interpreter)."""
    code = PROBE.format(argv=argv, module=module, watched=watched)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("LOADED:"))
    return [m for m in line.removeprefix("LOADED:").split(",") if m]


def test_printing_the_config_needs_neither_pydantic_nor_the_extensions(tmp_path: Path) -> None:
    # The first run may fill the group-node cache; from then on the nodes come from it.
    argv, watched = ["evsys", "--cfg", "job"], ("pydantic", "evsys.config", "evsys.algorithms")
    loaded_modules("evsys", argv, watched, tmp_path)
    assert loaded_modules("evsys", argv, watched, tmp_path) == []


def test_validating_does_not_build_the_group_nodes_again(tmp_path: Path) -> None:
    # Validation loads the extensions it checks, but takes the group options from the cache.
    code = """
import sys
from evsys.compose import nodes
def refuse():
    raise AssertionError("group nodes built although the cache holds them")
nodes.ensure_published()  # fills the cache if it is cold
nodes.publish_group_nodes({})
nodes.build_group_nodes = refuse
from evsys.cli import main
main(["validate"])
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "config is valid" in done.stdout


def test_a_mock_run_without_api_baselines_leaves_the_eval_harness_out(workdir: Path) -> None:
    argv = ["evsys", "algorithm.params.max_steps=1", "eval=none"]
    watched = ("evsys.harness.evaluate", "evsys.harness.baselines", "urllib.request")
    assert loaded_modules("evsys", argv, watched, workdir) == []


@pytest.mark.parametrize(
    "argv", [["evsys", "validate"], ["evsys", "plan", "seed=1,2"]], ids=" ".join
)
def test_checking_a_config_leaves_http_and_ssl_out(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checking the default experiment loads the inference registry, so the HTTP clients; they
    # import urllib.request (which loads ssl, ≈ 10 ms) only when they make a request.
    monkeypatch.setenv("EVSYS_CONFIG_NAME", "config")
    watched = ("urllib.request", "http.client", "ssl")
    loaded_modules("evsys.cli", argv, watched, tmp_path)  # fills the caches if cold
    assert loaded_modules("evsys.cli", argv, watched, tmp_path) == []


def test_the_cache_stamp_ignores_what_runs_write_to_the_working_directory(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(workdir))  # as `python -m evsys` puts it on sys.path
    modules = [str(Path(registry.__file__))]
    before = nodes._stamp(modules)
    (workdir / "outputs" / "runs").mkdir(parents=True)
    (workdir / "notes.txt").write_text("a new file in the project")
    assert nodes._stamp(modules) == before


def test_the_cache_stamp_changes_when_a_distribution_comes_or_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules = [str(Path(registry.__file__))]
    before = nodes._stamp(modules)
    dist_info = site / "evsys_plugin-0.1.dist-info"
    dist_info.mkdir()
    installed = nodes._stamp(modules)
    assert installed != before
    dist_info.rmdir()
    assert nodes._stamp(modules) == before


def test_extensions_registered_in_process_are_published_but_never_cached(
    clean_registries: None,
) -> None:
    @registry.register_algorithm("startup_probe_algo")
    class StartupProbe:
        """Registered by this test only."""

    assert registry.generation() != 0
    nodes.ensure_published()
    assert "startup_probe_algo" in nodes.GROUP_NODES["algorithm"]
    cache = nodes._cache_path()
    if cache.exists():
        assert "startup_probe_algo" not in json.loads(cache.read_text())["nodes"]["algorithm"]


@pytest.mark.parametrize(
    "loading",
    [
        "for r in registry.REGISTRIES.values(): r.names()",
        # pre-flight imports it for one function: its package registers every built-in log store
        "import evsys.log_stores.dashboard",
    ],
    ids=["loading", "importing a built-in module"],
)
def test_built_in_extensions_leave_the_generation_alone(tmp_path: Path, loading: str) -> None:
    # Only what a process registers of its own makes the cached nodes stale; the built-in
    # modules and entry points give every process the same registries, however they are loaded.
    code = f"from evsys import registry\n{loading}\nprint(registry.generation())"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "0"


def test_entry_points_are_read_again_when_a_distribution_comes_or_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evsys import entry_points

    site = tmp_path / "site"
    dist_info = site / "startup_probe-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: startup_probe\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text("[evsys.metrics]\nprobe = json:JSONDecoder\n")
    monkeypatch.syspath_prepend(str(site))
    try:
        entry_points._declared.cache_clear()
        [probe] = [ep for ep in entry_points.entry_points("evsys.metrics") if ep.name == "probe"]
        assert probe.load() is json.JSONDecoder
        entry_points._declared.cache_clear()  # a new process: from the cache on disk
        assert probe in entry_points.entry_points("evsys.metrics")
        (dist_info / "entry_points.txt").unlink()
        (dist_info / "METADATA").unlink()
        dist_info.rmdir()
        entry_points._declared.cache_clear()
        assert probe not in entry_points.entry_points("evsys.metrics")
    finally:
        entry_points._declared.cache_clear()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("json", json),
        ("json:JSONDecoder", json.JSONDecoder),
        ("json:decoder.JSONDecoder [x]", json.decoder.JSONDecoder),
    ],
)
def test_an_entry_point_loads_what_importlib_metadata_would(value: str, expected: object) -> None:
    from evsys.entry_points import EntryPoint

    assert EntryPoint("evsys.metrics", "probe", value).load() is expected


# -- composition kept on disk (evsys.compose.stored) ---------------------------------------------


def _as_a_new_process() -> None:
    """Forget what this process composed: the next composition starts from the cache on disk."""
    from evsys.compose import compose

    compose._defaults_cache.clear()
    compose._loaders.clear()


@pytest.fixture
def unregistered(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as one that registered nothing of its own (other tests of the session may
    have, and restored the registries since): the one kind that uses the cache on disk."""
    monkeypatch.setattr(registry, "_generation", 0)


def _merged(defaults: object) -> tuple[object, ...]:
    from omegaconf import OmegaConf

    cfg, hydra = defaults.cfg, defaults.hydra  # type: ignore[attr-defined]
    return (
        OmegaConf.to_yaml(cfg),
        OmegaConf.to_yaml(hydra),
        OmegaConf.is_struct(cfg),
        OmegaConf.is_struct(hydra),
        defaults.sources,  # type: ignore[attr-defined]
        defaults.choices,  # type: ignore[attr-defined]
    )


def test_stored_defaults_are_what_merging_gives(
    workdir: Path, unregistered: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evsys.compose import compose

    _as_a_new_process()
    groups, _ = compose.split_overrides(["algorithm=rl", "model=tiny"], [])
    merged = compose.compose_defaults(groups, "base")
    _as_a_new_process()
    monkeypatch.setattr(compose, "_merge_defaults_list", None)  # read back from disk, or fail
    groups, _ = compose.split_overrides(["algorithm=rl", "model=tiny"], [])
    kept = compose.compose_defaults(groups, "base")
    assert kept is not merged
    assert _merged(kept) == _merged(merged)


def test_a_changed_or_new_config_file_is_read_again(workdir: Path, unregistered: None) -> None:
    from evsys.compose.compose import compose

    (workdir / "conf" / "model").mkdir(parents=True)
    (workdir / "conf" / "model" / "mine.yaml").write_text("name: first\n")
    _as_a_new_process()
    assert compose(["model=mine"], "base").config["model"]["name"] == "first"
    (workdir / "conf" / "model" / "mine.yaml").write_text("name: the second\n")
    _as_a_new_process()
    assert compose(["model=mine"], "base").config["model"]["name"] == "the second"
    (workdir / "conf" / "model" / "other.yaml").write_text("name: other\n")
    _as_a_new_process()  # an option that did not exist when the groups were stored
    assert compose(["model=other"], "base").config["model"]["name"] == "other"


def test_the_stamp_watches_every_config_folder_of_the_search_path(workdir: Path) -> None:
    from evsys.compose import compose, stored
    from evsys.paths import config_dir, experiments_dir

    (workdir / "conf").mkdir()
    (workdir / "experiments").mkdir()
    _as_a_new_process()
    roots = stored.config_roots(compose._search_path(compose.config_loader()))
    assert {str(config_dir()), str(experiments_dir())} <= set(roots)
    assert {str(workdir.resolve() / "conf"), str(workdir.resolve() / "experiments")} <= set(roots)


def test_a_config_folder_of_the_primary_configs_searchpath_is_watched(
    workdir: Path, unregistered: None
) -> None:
    from evsys.compose.compose import compose

    extra = workdir / "extra"
    (extra / "model").mkdir(parents=True)
    (extra / "model" / "extra.yaml").write_text("name: first\n")
    (workdir / "conf").mkdir()
    (workdir / "conf" / "mine.yaml").write_text(
        "defaults:\n  - base\n  - override model: extra\n  - _self_\n"
        f"hydra:\n  searchpath:\n    - file://{extra}\n"
    )
    _as_a_new_process()
    assert compose([], "mine").config["model"]["name"] == "first"
    (extra / "model" / "extra.yaml").write_text("name: the second\n")
    _as_a_new_process()
    assert compose([], "mine").config["model"]["name"] == "the second"


def test_a_structured_config_stored_in_process_is_an_option_at_once(
    workdir: Path, unregistered: None
) -> None:
    from hydra.core.config_store import ConfigStore

    from evsys.compose.compose import compose

    _as_a_new_process()
    compose(["model=tiny"], "base")  # stores the groups and the defaults list
    ConfigStore.instance().store(group="model", name="startup_probe", node={"name": "stored"})
    try:
        _as_a_new_process()
        composition = compose(["model=startup_probe"], "base")
        assert not composition.problems
        assert composition.config["model"]["name"] == "stored"
    finally:
        ConfigStore.instance().repo["model"].pop("startup_probe.yaml", None)


def test_an_unreadable_cache_entry_is_built_again(workdir: Path, unregistered: None) -> None:
    from evsys.compose import stored
    from evsys.compose.compose import compose

    _as_a_new_process()
    expected = compose(["seed=5"], "base").config
    for entry in stored.cache_dir().glob("compose-*/*.pkl"):
        entry.write_bytes(b"not a pickle")
    _as_a_new_process()
    assert compose(["seed=5"], "base").config == expected


def test_a_registered_extension_is_never_served_from_the_stored_composition(
    workdir: Path, clean_registries: None
) -> None:
    from evsys.compose.compose import compose

    _as_a_new_process()
    compose([], "base")  # stored

    @registry.register_algorithm("startup_probe_recipe")
    class Probe:
        """Registered by this test only."""

        def train(self, ctx: object) -> None: ...

    _as_a_new_process()
    composition = compose(["algorithm=startup_probe_recipe"], "base")
    assert composition.config["algorithm"]["kind"] == "startup_probe_recipe"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["validate", "seed=3", "algorithm=rl"], "config is valid"),
        (["plan", "seed=1,2", "algorithm=rl"], "2 arms"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_checking_again_needs_neither_the_plugin_scan_nor_a_merge(
    argv: list[str], says: str, tmp_path: Path
) -> None:
    # Hydra's plugin scan (every module under hydra_plugins) and merging the defaults list were
    # most of what `evsys validate` cost; the first check stores what they give.
    code = """
import sys
from hydra.core.plugins import Plugins
from hydra.core.singleton import Singleton
from evsys.compose import compose
from evsys.cli import main
def refuse(*args, **kwargs):
    raise AssertionError("merged the defaults list although the cache holds it")
if sys.argv[1] == "again":
    compose._merge_defaults_list = refuse
try:
    main(sys.argv[2:])
except SystemExit as exc:
    assert exc.code == 0, exc.code
print("SCANNED" if Plugins in Singleton._instances else "NOT SCANNED")
"""
    for attempt in ("first", "again"):
        done = subprocess.run(
            [sys.executable, "-c", code, attempt, *argv],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert says in done.stdout
    assert done.stdout.strip().endswith("NOT SCANNED")


def test_package_versions_are_read_again_only_when_a_distribution_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evsys.run import record

    def read_again() -> dict[str, str]:
        raise AssertionError("package versions read again although no distribution changed")

    record.package_versions.cache_clear()
    try:
        first = record.package_versions()
        assert first == record._read_package_versions()
        record.package_versions.cache_clear()  # a new process
        monkeypatch.setattr(record, "_read_package_versions", read_again)
        assert record.package_versions() == first
        site = tmp_path / "site"
        (site / "startup_probe-0.1.dist-info").mkdir(parents=True)
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.setattr(record, "_read_package_versions", lambda: {"python": "probe"})
        record.package_versions.cache_clear()
        assert record.package_versions() == {"python": "probe"}
    finally:
        record.package_versions.cache_clear()


def test_a_config_node_is_built_once_and_every_load_gets_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omegaconf import OmegaConf

    from evsys.compose import node_cache

    monkeypatch.setenv("EVSYS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(node_cache, "_memory", {})
    built: list[str] = []

    def build() -> object:
        built.append("built")
        return OmegaConf.create({"a": {"b": 1}})

    first = node_cache.cached_node("probe:one", "a text", build)
    first.a.b = 2  # Hydra merges into what it loads
    again = node_cache.cached_node("probe:one", "a text", build)  # from memory
    monkeypatch.setattr(node_cache, "_memory", {})  # a new process: from disk
    from_disk = node_cache.cached_node("probe:one", "a text", build)
    assert built == ["built"]
    assert again.a.b == 1 and from_disk.a.b == 1 and again is not from_disk


def test_an_edited_config_file_is_parsed_again_into_the_same_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evsys.compose import node_cache

    monkeypatch.setenv("EVSYS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(node_cache, "_memory", {})
    assert node_cache.yaml_node("conf/model/x.yaml", "name: first\n").name == "first"
    monkeypatch.setattr(node_cache, "_memory", {})
    assert node_cache.yaml_node("conf/model/x.yaml", "name: second\n").name == "second"
    entries = list((tmp_path / "cache").rglob("*.pkl"))
    assert len(entries) == 1  # the file's entry, overwritten: the cache grows with the files
    entries[0].write_bytes(entries[0].read_bytes()[:30])  # cut short, e.g. by a full disk
    monkeypatch.setattr(node_cache, "_memory", {})
    assert node_cache.yaml_node("conf/model/x.yaml", "name: second\n").name == "second"


def test_the_evsys_app_reads_every_config_file_through_the_node_cache(workdir: Path) -> None:
    (workdir / "conf").mkdir()
    (workdir / "experiments").mkdir()
    info = subprocess.run(
        [sys.executable, "-m", "evsys", "--info", "searchpath"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    sources = dict(
        (cell.strip() for cell in line.strip(" |").split("|"))
        for line in info.stdout.splitlines()
        if line.count("|") == 3 and "://" in line
    )
    assert sources["hydra"] == "evsys-pkg://hydra.conf"
    assert sources["main"].startswith("evsys-file://")
    assert sources["project-conf"] == f"evsys-file://{workdir.resolve() / 'conf'}"
    assert sources["project-experiments"].startswith("evsys-experiments://")
