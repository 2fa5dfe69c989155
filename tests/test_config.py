"""The option schema: one declaration per option, strict validation, flat names, generated CLI."""
import json

import pytest
from click.testing import CliRunner

from loops.options import Spec
from madlab.cli import main
from madlab.commands.options import command, config_options
from madlab.config import OPTIONS, ConfigError, RunConfig, option_spec


def test_every_option_has_one_flat_name_and_flag():
    flats = [s.flat for s in OPTIONS]
    assert len(flats) == len(set(flats))
    assert len({s.flag for s in OPTIONS}) == len(OPTIONS)
    # the flags of madlab 0.1's commands all still exist (README and users' scripts use them)
    old = ["--loop", "--algo", "--omega", "--gens", "--seeds", "--first-seed", "--n-real", "--n-synth",
           "--n-aux", "--aux-epochs", "--epochs", "--warm-start", "--backend", "--target", "--T",
           "--schedule", "--width", "--depth", "--time-embedding", "--layer-norm", "--activation",
           "--batch-size", "--lr", "--lr-schedule", "--lr-end-factor", "--variance", "--estimator",
           "--sampling-bias", "--dataset", "--edm-net", "--edm-precond", "--edm-budget", "--edm-batch",
           "--edm-lr", "--edm-ema-kimg", "--edm-steps", "--edm-churn", "--guide-sigma-lo",
           "--guide-sigma-hi", "--fid-features", "--fid-weights", "--edm-checkpoints", "--metric",
           "--n-eval", "--device", "--seed-chunk"]
    assert set(old) <= {s.flag for s in OPTIONS}
    assert all(s.help.strip() for s in OPTIONS)


@pytest.mark.parametrize("bad, says", [
    ({"gens": "3"}, "gens must be an integer"),
    ({"gens": 2.5}, "gens must be an integer"),
    ({"seeds": True}, "seeds must be an integer"),
    ({"omega": "strong"}, "omega must be a number"),
    ({"omega": float("nan")}, "omega must be a finite number"),
    ({"omega": float("inf")}, "omega must be a finite number"),
    ({"warm_start": 1}, "warm-start must be true or false"),
    ({"width": 0}, "width must be positive"),
    ({"loop": "sideways"}, "choose one of fully-synthetic, augment, fresh, accumulate"),
    ({"backend": "edm", "edm_net": "huge"}, "--edm-net"),
    ({"metric": ["fid"]}, "unknown metric 'fid' for backend toy-ddpm"),
    ({"metric": "w2"}, None),                                   # a comma string is a list
])
def test_validate_is_strict_about_types_choices_and_ranges(bad, says):
    cfg = RunConfig.from_flat(bad)
    if says is None:
        cfg.validate()
        return
    with pytest.raises(ConfigError, match=says.replace("(", r"\(")):
        cfg.validate()


def test_the_python_api_rejects_wrong_types_built_directly():
    cfg = RunConfig()
    cfg.loop.gens = "3"
    with pytest.raises(ConfigError, match="gens must be an integer, got '3'"):
        cfg.validate()


def test_flat_names_dotted_paths_and_dashes_name_the_same_option():
    a = RunConfig.from_flat(width=32, n_synth=40).validate()
    b = RunConfig.from_flat({"toy_ddpm.width": 32, "loop.n_synth": 40}).validate()
    c = RunConfig.from_flat({"n-synth": 40, "width": 32}).validate()
    assert a.run_id() == b.run_id() == c.run_id()
    assert a.toy_ddpm.width == 32 and a.loop.n_synth == 40
    assert option_spec("edm.lr").flat == "edm_lr" and option_spec("edm-lr").path == ("edm", "lr")
    with pytest.raises(ConfigError, match="did you mean width"):
        RunConfig.from_flat(widht=3)


def test_floats_written_as_ints_are_one_run():
    assert RunConfig.from_flat(omega=3, epochs=100).validate().run_id() == RunConfig().validate().run_id()


def test_a_run_carries_its_own_and_its_backends_options_only():
    toy = RunConfig().validate()
    gauss = RunConfig.from_flat(backend="gaussian").validate()
    image = RunConfig.from_flat(backend="edm").validate()
    assert "width" in toy.flat() and "estimator" not in toy.flat() and "dataset" not in toy.flat()
    assert "estimator" in gauss.flat() and "width" not in gauss.flat() and "target" in gauss.flat()
    assert "dataset" in image.flat() and "target" not in image.flat() and "width" not in image.flat()
    assert set(toy.to_dict()) == {"loop", "algo", "seeds", "first_seed", "backend", "target",
                                  "toy_ddpm", "evaluation", "device", "seed_chunk", "keep_checkpoints"}
    # what the inactive backends hold does not change the run id; what the active one holds does
    assert RunConfig.from_flat(backend="gaussian", width=8).validate().run_id() == gauss.run_id()
    assert RunConfig.from_flat(width=8).validate().run_id() != toy.run_id()
    # speed and where files go are no part of the run id
    assert RunConfig.from_flat(device="cpu", seed_chunk=3).validate().run_id() == toy.run_id()
    assert RunConfig.from_flat(backend="edm", edm_checkpoints="/tmp/x").validate().run_id() == image.run_id()


def test_to_dict_round_trips_through_json():
    cfg = RunConfig.from_flat(backend="gaussian", estimator="unbiased", omega=1.5, metric="w2,fd").validate()
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).validate()
    assert again.flat() == cfg.flat() and again.run_id() == cfg.run_id()


def test_backend_configs_get_the_runs_device():
    cfg = RunConfig.from_flat(width=24)
    assert cfg.ddpm().width == 24 and cfg.ddpm().device == "cpu"
    assert cfg.backend_config("edm").device == "cpu"


def test_each_backend_record_brings_its_options_help_and_metrics():
    """madlab.backends: one record per backend gives RunConfig its sub-config (options active only
    under that --backend), --backend's choices and help, and the metrics --metric accepts."""
    import dataclasses

    from madlab.backends import BACKENDS

    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    assert option_spec("backend").choices == tuple(BACKENDS)
    for name, spec in BACKENDS.items():
        assert isinstance(getattr(RunConfig(), spec.options), spec.config)
        assert fields[spec.options].metadata["branch"] == (name,)
        assert f"{name} ({spec.help})" in option_spec("backend").help
        assert set(spec.metrics) <= set(option_spec("metric").choices)
        cfg = RunConfig.from_flat(backend=name, algo="standard")
        assert (name in option_spec("target").branch) == spec.toy == ("target" in cfg.flat())
        assert cfg.validate().evaluation.metric == [spec.metrics[0]]     # the first is the default


def test_component_names_match_the_code_that_implements_them():
    import torch  # noqa: F401 - the implementations

    from madlab.edm.networks import NETWORKS
    from madlab.edm.precond import PRECONDITIONINGS
    from toy import config as toy_config
    from toy.network import ACTIVATIONS
    from toy.schedules import alpha_bar
    from toy.targets import TARGETS
    from madlab.edm import config as edm_config

    assert tuple(TARGETS) == toy_config.TARGET_NAMES
    assert tuple(ACTIVATIONS) == toy_config.ACTIVATION_NAMES
    assert tuple(NETWORKS) == edm_config.NETWORK_NAMES
    assert tuple(PRECONDITIONINGS) == edm_config.PRECONDITIONINGS
    for schedule in toy_config.SCHEDULES:
        assert alpha_bar(schedule, 10).shape == (11,)


def command_app(mode):
    """A one-command app with the generated options that hands back the parsed RunConfig."""
    seen = {}

    def go(**options) -> None:
        seen.update({k: v for k, v in options.items() if v is not None})

    return command("go", go, config_options(mode)), seen


def other_value(spec: Spec):
    """A valid value different from the option's default, and how a user types it (a default
    of None is resolved by validate(), e.g. the toy DDPM learner's knobs)."""
    if spec.default is None and spec.kind in (int, float):
        return spec.kind(7), str(spec.kind(7))
    if spec.kind is bool:
        return (not spec.default), None
    if spec.choices:
        value = next(c for c in spec.choices if c != spec.default and c != "fid")
        return ([value] if spec.kind is list else value), value
    if spec.kind is int:
        return spec.default + 3, str(spec.default + 3)
    if spec.kind is float:
        value = 0.5 if spec.default in (0.0, float("inf")) else spec.default * 0.5
        return value, repr(value)
    return "somewhere", "somewhere"


def test_run_options_are_generated_from_the_schema_and_reach_the_config():
    app, seen = command_app("run")
    args, expected = [], {}
    for spec in OPTIONS:
        value, typed = other_value(spec)
        if spec.kind is bool:
            args.append(spec.flag if value else "--" + (spec.negative or "no-" + spec.flat.replace("_", "-")))
        else:
            args += [spec.flag, typed]
        expected[spec.flat] = value
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    cfg = RunConfig.from_flat(seen)
    assert cfg.flat(active_only=False) == expected


def test_sweep_options_take_comma_lists_of_every_option():
    from madlab.sweep import parse_values

    app, seen = command_app("sweep")
    result = CliRunner().invoke(app, ["--omega", "0,1.5", "--width", "8,16", "--layer-norm", "true,false",
                                      "--metric", "w2,fd"])
    assert result.exit_code == 0, result.output
    parsed = {k: parse_values(k, v) for k, v in seen.items()}
    assert parsed == {"omega": [0.0, 1.5], "width": [8, 16], "layer_norm": [True, False],
                      "metric": [["w2", "fd"]]}


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_help_groups_the_options_by_component(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    for heading in ("Loop:", "SIMS:", "Toy DDPM (--backend toy-ddpm):", "Gaussian fit (--backend gaussian):",
                    "EDM images (--backend edm):", "Evaluation and output:"):
        assert heading in out, heading
    for spec in OPTIONS:
        section = out[out.index(spec.panel + ":"):]
        assert spec.flag in section.split("\n\n")[0], spec.flag      # listed under its component
