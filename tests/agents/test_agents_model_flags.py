"""The learned model's flags (--weights, --precision, --cpu-compile) work on the Hydra CLIs too."""

import argparse
import os
import subprocess

import pytest
import yaml

from world_model.options import add_model_arguments, model_flag_overrides, model_options


def test_flags_become_overrides_of_the_backend_options_and_the_rest_is_kept():
    argv = ["backend=learned", "--weights", "learned_fast", "--precision=bf16", "--cpu-compile", "episodes=2"]
    assert model_flag_overrides(argv, "backend_kwargs") == [
        "backend=learned",
        "++backend_kwargs.weights=learned_fast",
        "++backend_kwargs.precision=bf16",
        "++backend_kwargs.cpu_compile=true",
        "episodes=2",
    ]
    assert model_flag_overrides(["--help"], "x") == ["--help"]  # Hydra's own flags pass through


@pytest.mark.parametrize("argv", [["--weights"], ["--precision", "--cpu-compile"]])
def test_a_flag_without_its_value_is_refused(argv):
    with pytest.raises(SystemExit, match=f"{argv[0]} needs a value"):
        model_flag_overrides(argv, "backend_kwargs")


@pytest.mark.parametrize(
    "cli, path",
    [
        ("dreamx-serve", ["backend_kwargs"]),
        ("dreamx-train-agent", ["env_kwargs", "backend_options"]),
        ("dreamx-eval-agent", ["env_kwargs", "backend_options"]),
        ("dreamx-plan", ["plan_backend_options"]),
    ],
)
def test_each_hydra_cli_composes_the_flags_into_its_config(cli, path):
    """``--cfg job`` prints the composed config and runs nothing."""
    args = [cli, "--weights", "learned_fast", "--precision", "fp32", "--cpu-compile", "--cfg", "job"]
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    options = yaml.safe_load(proc.stdout)
    for key in path:
        options = options[key]
    assert (
        options["weights"] == "learned_fast"
        and options["precision"] == "fp32"
        and options["cpu_compile"] is True
    )


def test_argparse_clis_pass_only_the_flags_given_as_backend_options():
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    assert model_options(parser.parse_args([])) == {}  # the backend's own defaults
    args = parser.parse_args(["--weights", "learned_fast", "--cpu-compile"])
    assert model_options(args) == {"weights": "learned_fast", "cpu_compile": True}
    with pytest.raises(SystemExit):
        parser.parse_args(["--precision", "fp16"])
