"""The command line, end to end, in subprocesses: exit codes, outputs, the Hydra flags."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_evsys, run_results


def test_default_run_writes_its_record(workdir: Path) -> None:
    done = run_evsys("algorithm.params.max_steps=5", cwd=workdir)
    assert done.returncode == 0, done.stderr
    (record,) = run_results(workdir / "outputs")
    assert record["status"] == "completed"
    run_dir = Path(record["run_dir"])
    assert run_dir.parent.parent == (workdir / "outputs" / "runs").resolve()
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert (
        run_dir / ".hydra" / "overrides.yaml"
    ).read_text().strip() == "- algorithm.params.max_steps=5"
    assert f"run {record['run_id']} completed" in done.stdout
    assert "eval/exact_match" in done.stdout


def test_bad_config_exits_2_with_one_report_and_writes_nothing(workdir: Path) -> None:
    done = run_evsys("algorithm.params.lerning_rate=1", "backend=mok", cwd=workdir)
    assert done.returncode == 2
    assert "the config has 2 problems" in done.stderr
    assert "did you mean 'learning_rate'?" in done.stderr
    assert "did you mean 'mock'?" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (workdir / "outputs").exists()


def test_failed_run_exits_1_and_is_recorded(workdir: Path) -> None:
    done = run_evsys("backend.params.fail_at_step=2", cwd=workdir)
    assert done.returncode == 1
    (record,) = run_results(workdir / "outputs")
    assert record["status"] == "failed"
    assert "fail_at_step" in record["error"]


def test_bad_data_exits_2(workdir: Path) -> None:
    (workdir / "rows.jsonl").write_text('{"prompt": "x", "answer": "y"}\nnot json\n')
    done = run_evsys("data.path=rows.jsonl", "data.eval_path=null", cwd=workdir)
    assert done.returncode == 2
    assert "rows.jsonl:2" in done.stdout


def test_hydra_flags_behave_as_in_any_hydra_app(workdir: Path) -> None:
    cfg = run_evsys("--cfg", "job", "algorithm=rl", cwd=workdir)
    assert cfg.returncode == 0, cfg.stderr
    assert "kind: rl" in cfg.stdout and "group_size: 4" in cfg.stdout

    help_text = run_evsys("--help", cwd=workdir)
    assert help_text.returncode == 0
    assert (
        "algorithm: agent_rl, combo, distill, gepa_prompt, local_rl, local_sft, mock_rl, "
        "mock_sft, rl, sdft, sft, sft_quick, sft_small_model" in help_text.stdout
    )
    assert (
        "experiment: agent_calculator, agent_guess_number, continual_mock, lora_rank, quickstart,"
        " rl_arithmetic" in help_text.stdout
    )

    info = run_evsys("--info", "searchpath", cwd=workdir)
    assert info.returncode == 0
    assert "evsys-experiments" in info.stdout
    assert not (workdir / "outputs").exists()


def test_project_conf_and_experiments_add_and_override_options(workdir: Path) -> None:
    (workdir / "conf" / "model").mkdir(parents=True)
    (workdir / "conf" / "model" / "tiny.yaml").write_text("name: my-org/my-tiny\n")
    (workdir / "conf" / "model" / "mine.yaml").write_text("name: my-org/mine\n")
    (workdir / "experiments").mkdir()
    (workdir / "experiments" / "mine.yaml").write_text("# @package _global_\nname: mine\nseed: 9\n")

    overridden = run_evsys("--cfg", "job", cwd=workdir)
    assert "name: my-org/my-tiny" in overridden.stdout
    added = run_evsys("--cfg", "job", "model=mine", "experiment=mine", cwd=workdir)
    assert "name: my-org/mine" in added.stdout and "seed: 9" in added.stdout
    shipped = run_evsys("--cfg", "job", "experiment=lora_rank", cwd=workdir)
    assert "name: lora_rank" in shipped.stdout


def test_validate_json_report(workdir: Path) -> None:
    done = run_evsys(
        "validate", "--json", "algorithm.params.batch_size=0", cwd=workdir, module=False
    )
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["ok"] is False
    (problem,) = report["problems"]
    assert problem == {
        "path": "algorithm.params.batch_size",
        "message": "Input should be greater than or equal to 1",
        "value": 0,
        "expected": "a number >= 1",
        "source": "override 'algorithm.params.batch_size=0'",
    }
    ok = run_evsys("validate", "--json", cwd=workdir, module=False)
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"ok": True, "problems": []}


def test_validate_all_experiments(workdir: Path) -> None:
    (workdir / "experiments").mkdir()
    (workdir / "experiments" / "broken.yaml").write_text("# @package _global_\nseeed: 1\n")
    done = run_evsys("validate", "--all-experiments", "--json", cwd=workdir, module=False)
    assert done.returncode == 2
    report = json.loads(done.stdout)["experiments"]
    assert report["lora_rank"]["ok"] and report["rl_arithmetic"]["ok"]
    assert report["broken"]["problems"][0]["suggestion"] == "seed"


def test_a_config_file_that_is_not_yaml_is_reported_with_its_line(workdir: Path) -> None:
    (workdir / "conf" / "model").mkdir(parents=True)
    (workdir / "conf" / "model" / "broken.yaml").write_text("name: [\n")
    report = "conf/model/broken.yaml, line 2: not valid YAML: expected the node content"
    for args, module in (
        (["validate", "model=broken"], False),
        (["plan", "model=broken,tiny"], False),
        (["model=broken"], True),
        (["--multirun", "model=broken,tiny"], True),
    ):
        done = run_evsys(*args, cwd=workdir, module=module)
        assert done.returncode == 2, (args, done.stderr)
        assert report in done.stdout + done.stderr, args
        assert "Traceback" not in done.stderr, args
    # Hydra prints the config itself (evsys checks nothing first): its one-line error.
    printed = run_evsys("model=broken", "--cfg", "job", cwd=workdir)
    assert printed.returncode == 1
    assert report in printed.stderr and "Traceback" not in printed.stderr
    assert not (workdir / "outputs").exists()


def test_list_and_schema(workdir: Path) -> None:
    listing = json.loads(run_evsys("list", "--json", cwd=workdir, module=False).stdout)
    assert {e["name"] for e in listing["algorithm"]} >= {"sft", "rl"}
    assert "mock" in next(e for e in listing["algorithm"] if e["name"] == "sft")["backends"]
    assert {e["name"] for e in listing["log_store"]} == {
        "jsonl",
        "tensorboard",
        "multiplex",
        "dashboard",
    }

    schema = json.loads(run_evsys("schema", "algorithm", "sft", cwd=workdir, module=False).stdout)
    assert schema["properties"]["learning_rate"]["exclusiveMinimum"] == 0
    assert schema["additionalProperties"] is False

    unknown = run_evsys("schema", "algorithm", "sfft", cwd=workdir, module=False)
    assert unknown.returncode == 2 and "did you mean 'sft'?" in unknown.stderr

    everything = json.loads(run_evsys("schema", "--all", cwd=workdir, module=False).stdout)
    assert set(everything["groups"]["algorithm"]["options"]) == {
        *(
            "agent_rl",
            "combo",
            "distill",
            "gepa_prompt",
            "rl",
            "sdft",
            "sft",
            "sft_quick",
            "sft_small_model",
        ),
        *("local_rl", "local_sft", "mock_rl", "mock_sft"),  # the reference's routed recipe keys
    }
    assert everything["groups"]["algorithm"]["extension_kind"] == "algorithm"
    assert "tiny" in everything["groups"]["model"]["options"]
    assert "lora_rank" in everything["groups"]["experiment"]["options"]
    assert "mock" in everything["groups"]["eval/inference"]["options"]
    assert set(everything["extensions"]["metric"]) >= {"exact_match", "pass_at_k"}
    assert "ModelConfig" in everything["config"]["$defs"]


def test_what_preflight_accepts_hydra_runs(workdir: Path) -> None:
    # Fields no conf file sets still take plain overrides, and Hydra agrees.
    done = run_evsys(
        "eval.n_samples=5", "data.limit=12", "algorithm.params.max_steps=2", cwd=workdir
    )
    assert done.returncode == 0, done.stderr
    (record,) = run_results(workdir / "outputs")
    assert record["config"]["eval"]["n_samples"] == 5
    # A new key in a free-form dict needs `+`; evsys says so instead of Hydra's traceback.
    refused = run_evsys("metadata.notes.owner=me", cwd=workdir)
    assert refused.returncode == 2
    assert "+metadata.notes.owner=me" in refused.stderr
    assert (
        run_evsys(
            "+metadata.notes.owner=me", "algorithm.params.max_steps=1", cwd=workdir
        ).returncode
        == 0
    )


def test_list_summaries_are_whole_sentences() -> None:
    from evsys.cli.listing import inventory

    for kind, entries in inventory().items():
        for entry in entries:
            assert entry["summary"].endswith("."), (kind, entry["name"], entry["summary"])
