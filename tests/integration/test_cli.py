"""The command line: every subcommand explains itself; the training commands' options come from the config
dataclasses (no default typed twice), `--config FILE` reads a saved run back, recipe choices come from the
method registry; the shipped teachers' recipes live in workbench/configs/teachers.py."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench import cli
from workbench.cli import build_parser, main
from workbench.cli.common import method_config, train_config
from workbench.methods import get_method, method_names
from workbench.train import TrainConfig

SUBCOMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)
# the TrainConfig fields no command offers as an option: filled by the method or from the size options
NOT_OPTIONS = {"size", "recipe_args", "tokenizer_from"}  # tokenizer_from: set by dide-pt for its first stage


def _help(*args):
    out = subprocess.run([sys.executable, "-m", "workbench.cli", *args, "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _parse(*argv):
    """(TrainConfig, method config or None) that `workbench ARGV` would run with."""
    args = build_parser(argv[0]).parse_args(list(argv))
    cfg = train_config(args)
    return method_config(args, cfg) if hasattr(args, "method_dests") else (cfg, None)


def _flags(command: str) -> set[str]:
    parser = build_parser(command)._subparsers._group_actions[0].choices[command]
    return {s for action in parser._actions for s in action.option_strings}


def test_top_level_help_lists_every_subcommand():
    text = _help()
    assert "distill" in text.lower()
    for cmd in SUBCOMMANDS:
        assert cmd in text


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_subcommand_help(cmd):
    text = _help(cmd)
    assert f"workbench {cmd}" in text
    assert len(text.splitlines()) > 5


def test_every_command_is_a_module_with_add_parser_and_run():
    assert len(cli.COMMANDS) == len(SUBCOMMANDS) and set(cli.NAMES) == set(SUBCOMMANDS)
    for module in cli.COMMANDS:
        assert callable(module.add_parser) and callable(module.run) and module.HELP


@pytest.mark.parametrize(("command", "task"), [("distill", "answer"), ("distill-retrieval", "retrieval")])
def test_recipe_choices_and_method_options_come_from_the_registry(command, task):
    parser = build_parser(command)._subparsers._group_actions[0].choices[command]
    (recipe,) = [a for a in parser._actions if "--recipe" in a.option_strings]
    assert tuple(recipe.choices) == method_names(task=task)
    flags = _flags(command)
    for name in method_names(task=task):
        for f in dataclasses.fields(get_method(name).Config):
            assert "--" + f.name.replace("_", "-") in flags, (name, f.name)


@pytest.mark.parametrize("command", ["train", "distill", "distill-retrieval"])
def test_every_train_config_field_is_an_option_or_set_by_the_command(command):
    set_by_command = {"train": {"recipe", "teacher"}, "distill": {"model", "recipe"},
                      "distill-retrieval": {"model", "recipe", "teacher"}}[command]  # fmt: skip
    flags = _flags(command)
    for f in dataclasses.fields(TrainConfig):
        if f.name not in NOT_OPTIONS | set_by_command:
            assert "--" + f.name.replace("_", "-") in flags, f.name


def test_defaults_are_the_dataclasses_own():
    cfg, _ = _parse("train", "--out", "o")
    assert cfg == TrainConfig(out="o")
    for name in method_names(task="answer"):
        cfg, config = _parse("distill", "--recipe", name, "--out", "o", "--teacher", "t")
        assert config == get_method(name).config()
        assert cfg == TrainConfig(out="o", teacher="t", recipe=name, model=get_method(name).student)
    for name in method_names(task="retrieval"):
        cfg, config = _parse("distill-retrieval", "--recipe", name, "--out", "o")
        assert config == get_method(name).config()
        assert cfg == TrainConfig(out="o", recipe=name, model="dual", dataset="shapes-retrieval-hard")
    assert _parse("distill", "--out", "o")[0].recipe == "dide"
    assert _parse("distill-retrieval", "--out", "o")[0].recipe == "mcad"


def test_options_reach_the_configs():
    cfg, config = _parse(
        "distill", "--recipe", "mad-naive", "--out", "o", "--no-confidence", "--token-selection",
        "--vision-teacher", "none", "--k", "2", "--curriculum", "shape:600", "--oversample", "not-colour-present:2",
        "--max-steps", "7", "--text-layers", "1", "--conv-stem", "16", "32",
    )  # fmt: skip
    assert (config.confidence, config.token_selection, config.vision_teacher, config.k) == (False, True, None, 2)
    assert cfg.curriculum == [[["shape"], 600]] and cfg.oversample == {"not-colour-present": 2}
    assert cfg.max_steps == 7 and cfg.size == {"text_layers": 1, "conv_stem": [16, 32]} and cfg.model == "fusion"
    _, config = _parse("distill", "--out", "o", "--layers", "0", "1", "--t2i", "0.5")
    assert config.layers == (0, 1) and config.t2i == 0.5  # a tuple, as the Config declares


def test_config_file_then_flags(tmp_path):
    dide = json.loads(json.dumps(dataclasses.asdict(get_method("dide").config(t2i=0.5))))  # as a run saves it
    saved = TrainConfig(out=str(tmp_path / "run"), recipe="dide", teacher="t", lr=1e-3, size={"text_layers": 1},
                        curriculum=[[["shape"], 600]], recipe_args=dide)  # fmt: skip
    (tmp_path / "train_config.json").write_text(json.dumps(dataclasses.asdict(saved)))
    cfg, config = _parse("distill", "--config", str(tmp_path / "train_config.json"), "--i2t", "0.25", "--seed", "3")
    assert cfg == dataclasses.replace(saved, seed=3, model="dual")
    assert config == get_method("dide").config(t2i=0.5, i2t=0.25)  # the saved method config, then the flag
    cfg, config = _parse("distill", "--config", str(tmp_path), "--recipe", "kd", "--out", "elsewhere")  # run folder
    assert (cfg.recipe, cfg.out, config) == ("kd", "elsewhere", get_method("kd").config())
    cfg, _ = _parse("train", "--config", str(tmp_path), "--lr", "0.1")
    assert cfg.lr == 0.1 and cfg.curriculum == saved.curriculum


def test_config_from_a_checkpoint_folder(tmp_path):
    """A shipped checkpoint's recorded recipe runs again with other options (another seed) in a new run folder;
    without --out it is refused (the recorded run folder is the run that made the checkpoint)."""
    saved = TrainConfig(out="runs/made-it", dataset="easy-vqa", lr=7e-4, warmup_steps=100, max_steps=3700,
                        curriculum=[[["shape"], 1000, "until=0.97"]], oversample={"rare": 2},
                        size={"patch_size": 8})  # fmt: skip
    record = {"kind": "fusion", "train_config": dataclasses.asdict(saved), "metrics": {}}
    (tmp_path / "workbench.json").write_text(json.dumps(record))
    cfg, _ = _parse("train", "--config", str(tmp_path), "--seed", "2", "--out", "runs/seed2")
    assert cfg == dataclasses.replace(saved, seed=2, out="runs/seed2")
    # 'none' clears the recorded curriculum or oversampling (the recipe without one of its decisions)
    cfg, _ = _parse("train", "--config", str(tmp_path), "--out", "o", "--curriculum", "none", "--oversample", "none")
    assert (cfg.curriculum, cfg.oversample, cfg.lr) == ([], {}, 7e-4)
    assert main(["train", "--config", str(tmp_path), "--seed", "2"]) == 2
    del record["train_config"]
    (tmp_path / "workbench.json").write_text(json.dumps(record))
    assert main(["train", "--config", str(tmp_path), "--out", "o"]) == 2


def test_the_shipped_teachers_recipes_read_back_from_their_checkpoints():
    """`--config assets/<name>-teacher` is the recipe `workbench rebuild` trains (the run folder aside)."""
    from workbench.configs.teachers import TEACHERS, teacher_config

    assets = Path(__file__).resolve().parents[2] / "assets"

    def comparable(cfg):
        # the run folder and checkpoint cadence aside; a started-from checkpoint only as given or not (the base
        # teacher was named shapes-vqa-teacher when the shipped entailment teachers were trained from it)
        started = {k: bool(getattr(cfg, k)) for k in ("init_from", "warm_start")}
        return dataclasses.replace(cfg, out="o", save_every=0, **started)

    for name in TEACHERS:
        cfg, _ = _parse("train", "--config", str(assets / f"{name}-teacher"), "--out", "o")
        assert comparable(cfg) == comparable(teacher_config(name, runs="runs", assets="assets")), name


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--lr", "0.1"], "--out is required"),
        (["distill", "--recipe", "kd", "--out", "o", "--k", "3"], "has no option --k"),
        (["train", "--config", "nowhere.json"], "nowhere.json"),
        (["distill", "--recipe", "dide", "--out", "o"], "pass --teacher"),
    ],
)
def test_bad_options_fail_with_a_message(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_distillation_run_is_not_rerun_by_train(tmp_path, capsys):
    (tmp_path / "train_config.json").write_text(json.dumps(dataclasses.asdict(TrainConfig(recipe="dide"))))
    assert main(["train", "--config", str(tmp_path)]) == 2
    assert "workbench distill" in capsys.readouterr().err
    assert main(["distill-retrieval", "--config", str(tmp_path)]) == 2  # not a retrieval method
    assert "pass --recipe" in capsys.readouterr().err


def test_distill_hands_every_method_to_the_registry(monkeypatch):
    import workbench.methods

    calls = []
    monkeypatch.setattr(workbench.methods, "distill", lambda cfg, config, **kw: calls.append((cfg, config, kw)))
    for command, task, extra in (("distill", "answer", ["--teacher", "t"]), ("distill-retrieval", "retrieval", [])):
        for name in method_names(task=task):
            assert main([command, "--recipe", name, "--out", "o", "--no-progress", *extra]) == 0
            cfg, config, kw = calls.pop()
            assert cfg.recipe == name and isinstance(config, get_method(name).Config)
            assert kw == {"resume": False, "progress": False}


def test_teacher_recipes_are_data_and_rebuild_builds_them(tmp_path):
    from workbench.configs.teachers import TEACHERS, teacher_config

    for name, recipe in TEACHERS.items():
        cfg = teacher_config(name, tmp_path / "runs", tmp_path / "assets")
        assert cfg.dataset == recipe.get("dataset", name) and cfg.out == str(tmp_path / "runs" / f"{name}-teacher")
        for key, value in recipe.items():
            got = getattr(cfg, key)
            assert (Path(got).name if key in ("init_from", "warm_start") else got) == value, (name, key)
    only = [a for a in build_parser("rebuild")._subparsers._group_actions[0].choices["rebuild"]._actions
            if "--only" in a.option_strings][0]  # fmt: skip
    assert set(TEACHERS) <= set(only.choices)


def test_report_publishes_into_a_section(tmp_path, capsys):
    from workbench.cli.common import RESULTS_DOC

    doc = tmp_path / "results.md"
    doc.write_text("# Results\n<!-- results:start -->\nold\n<!-- results:end -->\n")
    assert main(["report", "--assets", "assets", "--readme", str(doc)]) == 0
    assert "| checkpoint |" in doc.read_text() and "old" not in doc.read_text()
    args = build_parser("report").parse_args(["report", "--readme"])
    assert args.readme == RESULTS_DOC == "docs/results.md"


def test_the_documented_easy_vqa_command_is_the_shipped_recipe():
    """docs/usage.md's `workbench train` line for easy-VQA trains what `workbench rebuild --only easy-vqa` does."""
    import shlex

    from workbench.configs.teachers import teacher_config

    usage = (Path(__file__).resolve().parents[2] / "docs" / "usage.md").read_text().replace("\\\n", " ")
    (line,) = [x for x in usage.splitlines() if x.startswith(".venv/bin/workbench train --dataset easy-vqa ")]
    documented, _ = _parse(*shlex.split(line)[1:])
    rebuilt = teacher_config("easy-vqa", assets="assets")
    assert documented == dataclasses.replace(rebuilt, out=documented.out)


def test_teacher_recipes_start_only_from_teachers_built_before_them():
    """`rebuild` trains the recipes in order: a checkpoint a recipe starts from is an earlier recipe's asset."""
    from workbench.configs.teachers import ASSET_FIELDS, TEACHERS, teacher_name

    built: set[str] = set()
    for name, recipe in TEACHERS.items():
        for key in ASSET_FIELDS:
            if key in recipe:
                assert recipe[key] in built, (name, key, recipe[key])
        built.add(teacher_name(name))


def test_eval_on_val_paraphrase_of_a_dataset_without_it_is_a_clear_error(capsys):
    """The dataset refuses the split when it is built (not at its first example, past the command's error handling)."""
    assert main(["eval", "assets/shapes-ve-teacher", "--split", "val-paraphrase", "--size", "4"]) == 2
    assert "no held-out-val rewordings" in capsys.readouterr().err


def test_every_documented_command_parses():
    """Each `.venv/bin/workbench ...` line of the README and docs/ is a command this version accepts (options
    renamed or removed would otherwise leave the docs wrong without a failure)."""
    import shlex

    root = Path(__file__).resolve().parents[2]
    commands = []
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for line in doc.read_text().replace("\\\n", " ").splitlines():
            line = line.strip().strip("`")
            if line.startswith(".venv/bin/workbench ") and "--help" not in line:
                commands.append((doc.name, shlex.split(line.split(" # ")[0])[1:]))
    assert len(commands) > 30
    for doc, argv in commands:
        try:
            build_parser(argv[0]).parse_args(argv)
        except SystemExit:
            pytest.fail(f"{doc}: workbench {' '.join(argv)}")
