"""Id keys on the command line stay the text typed (pipeline.arguments), read by Hydra's own parser."""

from hydra.core.override_parser.overrides_parser import OverridesParser

from pipeline.arguments import config_groups, group_choices_as_text, ids_as_text

PARSER = OverridesParser.create()


def parsed(argument: str):
    override = PARSER.parse_override(argument)
    return list(override.sweep_string_iterator()) if override.is_sweep_override() else override.value()


def test_bare_ids_that_read_as_numbers_are_quoted():
    assert parsed("run_id=57e84031") == float("inf")  # why: Hydra's grammar, unquoted
    for argument, text in [("run_id=57e84031", "57e84031"), ("sweep_id=12e45678", "12e45678"),
                           ("resume=1_000", "1_000"), ("resume=12345678", "12345678"),
                           ("+run_id=0e1", "0e1"), ("run_id=last", "last"),
                           ("reproduce.against=57e84031", "57e84031")]:
        (quoted,) = ids_as_text([argument])
        assert parsed(quoted) == text, argument


def test_a_sweep_over_ids_keeps_the_quotes_in_each_jobs_override():
    (quoted,) = ids_as_text(["run_id=57e84031,0a1b2c3d"])
    jobs = parsed(quoted)  # the strings Hydra's sweeper gives each job
    assert jobs == ["'57e84031'", "'0a1b2c3d'"]
    assert [PARSER.parse_override(f"run_id={job}").value() for job in jobs] == ["57e84031", "0a1b2c3d"]


def test_other_arguments_and_yaml_words_are_left_as_given():
    kept = ["-m", "--multirun", "resume=null", "resume=false", "run_id='57e84031'", "run_id=${oc.env:RUN}",
            "explain.shap.max_evals=1e3", "hydra.run.dir=x", "my_run_id=57e84031", "reproduceXagainst=1e5", "run_id=choice(a,b)"]
    assert ids_as_text(kept) == kept


def test_group_options_that_read_as_booleans_or_numbers_are_quoted():
    # debug=true was the boolean true, which Hydra refused with a traceback ("Config group override
    # must be a string or a list. Got bool"); quoted, it is an option name Hydra looks up.
    groups = config_groups()
    assert {"model", "debug", "trainer", "hydra/launcher"} <= groups
    given = ["debug=true", "+debug=1", "model=1.5", "debug=true,false", "debug=null", "model=small",
             "hydra/launcher=joblib", "model.n_layers=2", "seed=3", "debug='on'"]
    assert group_choices_as_text(given, groups) == [
        "debug='true'", "+debug='1'", "model='1.5'", "debug='true','false'", "debug=null", "model=small",
        "hydra/launcher=joblib", "model.n_layers=2", "seed=3", "debug='on'"]
    assert parsed("debug='true'") == "true"
