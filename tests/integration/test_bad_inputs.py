"""Reliability: every malformed protocol or sweep file gives exit code 2 and one clear line.

Each case goes through the command line in-process (``bioperturb.cli.main``); a few also
through a real subprocess. The line must name the file, the key (where there is one) and
the reason, and there is no traceback unless ``--debug``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bioperturb.cli import main
from tests.conftest import tiny_toml

REPO = Path(__file__).resolve().parents[2]

GOOD = tiny_toml(output__figures=False)

SWEEP = """\
base = "protocol.toml"
[grid]
seed = [0, 1]
"training.lr" = [0.001, 0.003]
[sweep]
workers = 1
"""


@dataclass
class Case:
    id: str
    #: protocol text, or (old, new) edits of GOOD
    protocol: str | tuple[str, str] | None = None
    key: str = ""
    reason: str = ""
    #: which file the message must name: "protocol", "sweep" or "out"
    names: str = "protocol"
    #: sweep text, or (old, new) edits of SWEEP (the case runs `sweep` instead of `run`)
    sweep: str | tuple[str, str] | None = None


def edit(base: str, change: str | tuple[str, str] | None) -> str:
    if change is None:
        return base
    if isinstance(change, str):
        return change
    old, new = change
    assert old in base, old
    return base.replace(old, new, 1)


PROTOCOL_CASES = [
    Case("toml-syntax", ("[model]", "[model\n"), "", "invalid TOML"),
    Case("toml-duplicate-key", ("n_hidden = 8", "n_hidden = 8\nn_hidden = 9"), "", "invalid TOML"),
    Case("unknown-top-key", ("seed = 2", "seed = 2\ntrainig = 3"), "trainig", "unknown key"),
    Case("unknown-model-key", ("n_hidden = 8", "n_hiden = 8"), "model.n_hiden", "did you mean"),
    Case("unknown-training-key", ("n_trials = 2", "n_trial = 2"), "training.n_trial", "unknown"),
    Case("unknown-output-key", ("figures = false", "figure = false"), "output.figure", "unknown"),
    Case("unknown-task-key", ("pulse_duration", "pulse_length"), "task.pulse_length", "unknown"),
    Case("unknown-rule-key", ('name = "td_anp"', 'name = "td_anp"\nsigma = 1'), "rule.sigma", ""),
    Case("int-as-string", ("n_hidden = 8", 'n_hidden = "eight"'), "model.n_hidden", "integer"),
    Case("int-as-float", ("n_hidden = 8", "n_hidden = 8.5"), "model.n_hidden", "integer"),
    Case("int-as-bool", ("n_trials = 2", "n_trials = true"), "training.n_trials", "integer"),
    Case("float-as-string", ("n_trials = 2", 'n_trials = 2\nlr = "fast"'), "training.lr", "number"),
    Case(
        "bool-as-string", ("figures = false", 'figures = "no"'), "output.figures", "true or false"
    ),
    Case("table-as-value", ("seed = 2", "seed = 2\n[model.tau]\nx = 1"), "model.tau", ""),
    Case("wrong-unit", ('duration = "40 ms"', 'duration = "40 mV"'), "task.duration", "dimensions"),
    Case("missing-unit", ('duration = "40 ms"', "duration = 40"), "task.duration", "needs a unit"),
    Case(
        "unknown-unit", ('duration = "40 ms"', 'duration = "40 parsecs"'), "task.duration", "unit"
    ),
    Case("unit-not-number", ('duration = "40 ms"', 'duration = "long"'), "task.duration", "number"),
    Case("negative-size", ("n_hidden = 8", "n_hidden = -8"), "model.n_hidden", "positive"),
    Case("zero-size", ("n_hidden = 8", "n_hidden = 0"), "model.n_hidden", "positive"),
    Case("negative-tau", ("n_hidden = 8", 'n_hidden = 8\ntau = "-10 ms"'), "model.tau", "positive"),
    Case("zero-dt", ("n_hidden = 8", 'n_hidden = 8\ndt = "0 ms"'), "model.dt", "positive"),
    Case("dt-above-tau", ("n_hidden = 8", 'n_hidden = 8\ndt = "20 ms"'), "model", "exceed tau"),
    Case(
        "negative-sigma", ("n_hidden = 8", "n_hidden = 8\nsigma = -0.1"), "model.sigma", "negative"
    ),
    Case("nan-lr", ("n_trials = 2", "n_trials = 2\nlr = nan"), "training.lr", "finite"),
    Case("inf-lr", ("n_trials = 2", "n_trials = 2\nlr = inf"), "training.lr", "finite"),
    Case("negative-eval", ("eval_every = 1", "eval_every = -1"), "training.eval_every", "positive"),
    Case("beta-1", ("n_trials = 2", "n_trials = 2\nbeta1 = 1.0"), "training", "below 1"),
    Case(
        "negative-checkpoint",
        ("n_trials = 2", "n_trials = 2\ncheckpoint_every = -1"),
        "training.checkpoint_every",
        "negative",
    ),
    Case("bad-choice", ('codegen = "numpy"', 'codegen = "cpp"'), "engine.codegen", "one of"),
    Case("unknown-rule", ('name = "td_anp"', 'name = "td_anq"'), "rule.name", "unknown rule"),
    Case("unknown-task", ('name = "pattern"', 'name = "patern"'), "task.name", "unknown task"),
    Case("unknown-preset", ('preset = "rate_rnn"', 'preset = "lif"'), "model.preset", "unknown"),
    Case("preset-not-string", ('preset = "rate_rnn"', "preset = 3"), "model.preset", "expected"),
    Case(
        "missing-task", ('[task]\nname = "pattern"\n', '[tasks]\nname = "pattern"\n'), "tasks", ""
    ),
    Case("missing-rule-name", ('name = "td_anp"', ""), "rule.name", "missing"),
    Case("rule-name-list", ('name = "td_anp"', "name = [1]"), "rule.name", "unknown rule"),
    Case("kind-list", ('preset = "rate_rnn"', "kind = [1]"), "model.kind", "unknown kind"),
    Case(
        "task-not-table",
        GOOD.replace(
            '[task]\nname = "pattern"\nduration = "40 ms"\npulse_duration = "10 ms"\n', ""
        ).replace("seed = 2", 'seed = 2\ntask = "pattern"'),
        "task",
        "expected a table",
    ),
    Case("empty-file", "", "task", "missing"),
    Case("seed-negative", ("seed = 2", "seed = -1"), "seed", "non-negative"),
    Case("seed-string", ("seed = 2", 'seed = "one"'), "seed", "non-negative integer"),
    Case("name-with-slash", ('name = "tiny"', 'name = "a/b"'), "name", "file name"),
    Case(
        "record-dt-below-dt", ('record_dt = "2 ms"', 'record_dt = "0.5 ms"'), "output.record_dt", ""
    ),
    Case(
        "record-dt-not-dividing",
        ('record_dt = "2 ms"', 'record_dt = "3 ms"'),
        "output.record_dt",
        "divide",
    ),
    Case("duration-not-multiple", ('"40 ms"', '"40.5 ms"'), "task", "whole number"),
    Case(
        "outputs-mismatch",
        ("n_hidden = 8", "n_hidden = 8\nn_outputs = 3"),
        "model.n_outputs",
        "does not match",
    ),
    Case(
        "fuse-bad-choice",
        ('codegen = "numpy"', 'codegen = "numpy"\nfuse = "yes"'),
        "engine.fuse",
        "one of",
    ),
    Case(
        "fuse-on-runtime",
        ('codegen = "numpy"', 'codegen = "numpy"\nfuse = "on"'),
        "engine.fuse",
        "'standalone'",
    ),
    Case(
        "fuse-on-wp",
        tiny_toml(
            output__figures=False,
            rule__name="wp",
            engine__name="standalone",
            engine__fuse="on",
        ),
        "engine.fuse",
        "perturbed weights",
    ),
    Case(
        "sparse-standalone-online",
        tiny_toml(
            output__figures=False,
            model__p_connect=0.5,
            rule__apply="online",
            training__optimizer="sgd",
            engine__name="standalone",
        ),
        "engine.name",
        "only fully fused",
    ),
    Case("empty-train-list", ('name = "td_anp"', 'name = "td_anp"\ntrain = []'), "rule", "plastic"),
    Case("bad-train-entry", ('name = "td_anp"', 'name = "td_anp"\ntrain = ["W_x"]'), "rule", "W_x"),
    Case(
        "out-dir-under-file",
        ("figures = false", 'figures = false\ndir = "blocker/x"'),
        key="output.dir",
        reason="is a file, not a directory",
        names="out",
    ),
    # issue 17: inputs that used to pass validation and fail only after the work was done
    Case("seed-too-large", ("seed = 2", "seed = 9223372036854775808"), "seed", "below 2**63"),
    Case("name-too-long", ('name = "tiny"', f'name = "{"n" * 300}"'), "name", "at most 200"),
    Case("name-hidden", ('name = "tiny"', 'name = ".tiny"'), "name", "start with '.'"),
    Case("name-blank", ('name = "tiny"', 'name = " "'), "name", "a space"),
    Case(
        "record-dt-huge",
        ('record_dt = "2 ms"', 'record_dt = "1e308 s"'),
        "output.record_dt",
        "longer than a trial",
    ),
    Case(
        "preset-not-toml",
        ('preset = "rate_rnn"', 'preset = "../../etc/passwd"'),
        "model.preset",
        "unknown preset",
    ),
    Case("dt-absurd", ("n_hidden = 8", 'n_hidden = 8\ndt = "1e-9 ms"'), "model.dt", "at most"),
    Case(
        "memory-huge-n",
        ("n_hidden = 8", "n_hidden = 1000000"),
        "model.n_hidden",
        "more than this machine's",
    ),
    Case(
        "memory-huge-tape",
        ("n_trials = 2", "n_trials = 2000000000"),
        "training.n_trials",
        "of memory",
    ),
]

SWEEP_CASES = [
    Case("sweep-syntax", sweep=("[grid]", "[grid"), names="sweep", reason="invalid TOML"),
    Case("sweep-unknown-top", sweep=("[grid]", "grids = 1\n[grid]"), key="grids", names="sweep"),
    Case("sweep-missing-base", sweep=('base = "protocol.toml"\n', ""), key="base", names="sweep"),
    Case(
        "sweep-base-not-found",
        sweep=('"protocol.toml"', '"absent.toml"'),
        key="base",
        reason="file not found",
        names="sweep",
    ),
    Case(
        "sweep-base-dir",
        sweep=('"protocol.toml"', '"."'),
        key="base",
        reason="directory",
        names="sweep",
    ),
    Case("sweep-base-number", sweep=('"protocol.toml"', "3"), key="base", names="sweep"),
    Case(
        "sweep-missing-grid",
        sweep='base = "protocol.toml"\n',
        key="grid",
        reason="missing",
        names="sweep",
    ),
    Case(
        "sweep-empty-grid",
        sweep='base = "protocol.toml"\n[grid]\n',
        key="grid",
        reason="empty",
        names="sweep",
    ),
    Case("sweep-empty-list", sweep=("seed = [0, 1]", "seed = []"), key="grid.seed", names="sweep"),
    Case(
        "sweep-scalar-value",
        sweep=("seed = [0, 1]", "seed = 3"),
        key="grid.seed",
        reason="list",
        names="sweep",
    ),
    Case(
        "sweep-duplicate-value",
        sweep=("seed = [0, 1]", "seed = [1, 1]"),
        key="grid.seed",
        reason="duplicate",
        names="sweep",
    ),
    Case(
        "sweep-mixed-types",
        sweep=("seed = [0, 1]", 'seed = [0, "one"]'),
        key="grid.seed",
        reason="one type",
        names="sweep",
    ),
    Case(
        "sweep-unknown-key",
        sweep=('"training.lr"', '"training.lrr"'),
        key="grid.training.lrr",
        reason="did you mean",
        names="sweep",
    ),
    Case(
        "sweep-unknown-table",
        sweep=('"training.lr"', '"trainig.lr"'),
        key="grid.trainig.lr",
        reason="unknown key",
        names="sweep",
    ),
    Case(
        "sweep-wrong-type",
        sweep=("[0.001, 0.003]", '["fast", "slow"]'),
        key="grid.training.lr",
        reason="number",
        names="sweep",
    ),
    Case(
        "sweep-negative-value",
        sweep=('"training.lr" = [0.001, 0.003]', '"training.n_trials" = [2, -2]'),
        key="grid.training.n_trials",
        reason="positive",
        names="sweep",
    ),
    Case(
        "sweep-wrong-unit",
        sweep=('"training.lr" = [0.001, 0.003]', '"model.tau" = ["10 mV"]'),
        key="grid.model.tau",
        reason="dimensions",
        names="sweep",
    ),
    Case(
        "sweep-unknown-rule",
        sweep=('"training.lr" = [0.001, 0.003]', '"rule.name" = ["td_anp", "xyz"]'),
        key="grid.rule.name",
        reason="unknown rule",
        names="sweep",
    ),
    Case(
        "sweep-same-protocol",
        sweep=('"training.lr" = [0.001, 0.003]', '"model.tau" = ["10 ms", "0.01 s"]'),
        key="grid",
        reason="same protocol",
        names="sweep",
    ),
    Case(
        "sweep-cross-check",
        sweep=('"training.lr" = [0.001, 0.003]', '"model.dt" = ["1 ms", "3 ms"]'),
        key="grid",
        reason="whole number",
        names="sweep",
    ),
    Case(
        "sweep-unknown-option",
        sweep=("workers = 1", "worker = 1"),
        key="sweep.worker",
        reason="unknown",
        names="sweep",
    ),
    Case(
        "sweep-workers-zero",
        sweep=("workers = 1", "workers = 0"),
        key="sweep.workers",
        reason="positive",
        names="sweep",
    ),
    Case(
        "sweep-workers-string",
        sweep=("workers = 1", 'workers = "two"'),
        key="sweep.workers",
        reason="positive integer",
        names="sweep",
    ),
    Case(
        "sweep-out-not-string",
        sweep=("workers = 1", "workers = 1\nout = 5"),
        key="sweep.out",
        names="sweep",
    ),
    Case(
        "sweep-options-not-table",
        sweep='base = "protocol.toml"\nsweep = "fast"\n[grid]\nseed = [0, 1]\n',
        key="sweep",
        reason="table",
        names="sweep",
    ),
    Case(
        "sweep-bad-base",
        protocol=("n_hidden = 8", "n_hidden = -8"),
        sweep=SWEEP,
        key="model.n_hidden",
        reason="positive",
        names="protocol",
    ),
    Case(
        "sweep-out-under-file",
        sweep=("workers = 1", 'workers = 1\nout = "blocker/sweep"'),
        key="sweep.out",
        reason="not writable",
        names="out",
    ),
]

SWEEP_CASES += [
    Case(
        "sweep-ucx-scheduler",
        sweep=("workers = 1", 'scheduler = "ucx://10.0.0.1:8786"'),
        key="sweep.scheduler",
        reason="'ucx' protocol is not supported",
        names="sweep",
    ),
    Case(
        "sweep-too-many-points",
        sweep=(
            "seed = [0, 1]",
            f'seed = {list(range(400))}\n"model.g" = {[1.0 + k / 1000 for k in range(400)]}',
        ),
        key="grid",
        reason="320,000 points",
        names="sweep",
    ),
]

ALL = PROTOCOL_CASES + SWEEP_CASES


def prepare(tmp_path: Path, case: Case) -> tuple[list[str], dict[str, Path]]:
    protocol = tmp_path / "protocol.toml"
    protocol.write_text(edit(GOOD, case.protocol))
    (tmp_path / "blocker").write_text("a regular file, not a folder")
    files = {"protocol": protocol, "out": tmp_path / "blocker"}
    if case.sweep is not None:
        sweep = tmp_path / "sweep.toml"
        sweep.write_text(edit(SWEEP, case.sweep))
        files["sweep"] = sweep
        return ["sweep", str(sweep), "--quiet"], files
    out = [] if "dir =" in protocol.read_text() else ["--out", str(tmp_path / "out")]
    return ["run", str(protocol), "--quiet", *out], files


def check_one_line(rc: int, err: str, case: Case, files: dict[str, Path]) -> str:
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("bioperturb: error: "), line
    assert str(files[case.names]) in line, line
    if case.key:
        assert f" {case.key}:" in line or f": {case.key}" in line, line
    assert case.reason in line, line
    return line


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)
    argv, files = prepare(tmp_path, case)
    rc = main(argv)
    captured = capsys.readouterr()
    check_one_line(rc, captured.err, case, files)
    assert not (tmp_path / "out").exists(), "nothing is written for a bad input"


def test_there_are_at_least_30_bad_inputs():
    assert len(ALL) >= 30 and len({c.id for c in ALL}) == len(ALL)


# --------------------------------------------------------------------------- files
def file_cases(tmp_path: Path) -> list[tuple[str, Path, str]]:
    """(id, path given on the command line, reason) for files that cannot be read."""
    tmp_path.mkdir()
    regular = tmp_path / "regular.txt"
    regular.write_text("x")
    loop = tmp_path / "loop.toml"
    os.symlink(loop, loop)
    dangling = tmp_path / "dangling.toml"
    os.symlink(tmp_path / "nowhere.toml", dangling)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00name = 1\x80")
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    return [
        ("missing", tmp_path / "absent.toml", "file not found"),
        ("directory", folder, "is a directory"),
        ("under-a-file", regular / "protocol.toml", "not a directory"),
        ("symlink-loop", loop, "symbolic links"),
        ("dangling-symlink", dangling, "file not found"),
        ("binary", binary, "not a text file"),
    ]


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_unreadable_files_give_one_line(tmp_path, capsys, command):
    # running as root, chmod 000 does not stop a read: use inputs that fail for everyone
    for case_id, path, reason in file_cases(tmp_path / command):
        rc = main([command, str(path), "--quiet"])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and "Traceback" not in err, (case_id, err)
        assert str(path) in lines[0] and reason in lines[0], (case_id, lines[0])


def test_resume_with_a_damaged_checkpoint_gives_one_line(tmp_path, capsys):
    protocol = tmp_path / "tiny.toml"
    protocol.write_text(GOOD)
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny.ckpt.npz").write_bytes(b"PK\x03\x04 truncated")
    assert main(["run", str(protocol), "--out", str(out), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a readable checkpoint" in err
    assert str(out / "tiny.ckpt.npz") in err


def test_collect_of_a_folder_without_sweep_gives_one_line(tmp_path, capsys):
    assert main(["collect", str(tmp_path / "absent")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["collect", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sweep.json" in err and "not found" in err


def test_cli_workers_below_one_gives_one_line(tmp_path, capsys):
    argv, files = prepare(tmp_path, Case("w", sweep=SWEEP))
    assert main([*argv, "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--workers" in err and "positive" in err


def test_debug_shows_the_traceback(tmp_path):
    argv, _ = prepare(tmp_path, PROTOCOL_CASES[0])
    from bioperturb.schema import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", *argv])


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bioperturb.cli", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=300,
    )


@pytest.mark.parametrize("case_id", ["toml-syntax", "wrong-unit", "sweep-unknown-key"])
def test_bad_input_in_a_subprocess(tmp_path, case_id):
    case = next(c for c in ALL if c.id == case_id)
    argv, files = prepare(tmp_path, case)
    proc = _cli(*argv)
    check_one_line(proc.returncode, proc.stderr, case, files)


def test_debug_shows_the_traceback_in_a_subprocess(tmp_path):
    argv, _ = prepare(tmp_path, next(c for c in ALL if c.id == "unknown-rule"))
    proc = _cli("--debug", *argv)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr
