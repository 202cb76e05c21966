"""``snep spec``: TLC output parsing, verdicts, the jar check, and one real TLC run.

The parsing tests run always, on output captured from TLC runs of this spec. The
real run (`snep spec check` on the smallest model) needs TLA2TOOLS_JAR.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from snep.lab import tlc

SPEC = Path(__file__).resolve().parent.parent / "spec"
#: module name -> file, for the spec and every model (spec/, spec/models/)
MODULES = {p.stem: p for p in tlc.spec_files(SPEC) if p.suffix == ".tla"}

# Captured from `snep spec check` runs of spec/ (traces shortened).
PASSED = """\
TLC2 Version 2026.04.29.164809 (rev: cc6b616cf)
Running breadth-first search Model-Checking with fp 79 and seed -5756393138654167496 \
with 2 workers on 2 cores with 1820MB heap and 64MB offheap memory [pid: 18562]
Parsing file /work/main/spec/MC2.tla
Semantic processing of module MC2
Starting... (2026-11-26 06:30:45)
Computing initial states...
Finished computing initial states: 1 distinct state generated at 2026-11-26 06:30:46.
Progress(8) at 2026-11-26 06:30:49: 5,793 states generated (5,793 s/min), 2,997 distinct \
states found (2,997 ds/min), 1,717 states left on queue.
Progress(31) at 2026-11-26 06:37:49: 5,901,675 states generated (1,586,233 s/min), \
2,252,141 distinct states found (575,653 ds/min), 122,125 states left on queue.
Model checking completed. No error has been found.
  Estimates of the probability that TLC did not check all reachable states
  because two distinct states had the same fingerprint:
  calculated (optimistic):  val = 1.2E-6
7438173 states generated, 2744001 distinct states found, 0 states left on queue.
The depth of the complete state graph search is 49.
The average outdegree of the complete state graph is 1 (minimum is 0, the maximum 9 \
and the 95th percentile is 3).
Finished in 07min 35s at (2026-11-26 06:38:20)
"""

INVARIANT_VIOLATED = """\
TLC2 Version 2026.04.29.164809 (rev: cc6b616cf)
Starting... (2026-11-26 06:07:45)
Computing initial states...
Progress(13) at 2026-11-26 06:08:49: 585,567 states generated (581,483 s/min), 240,312 \
distinct states found (238,163 ds/min), 129,880 states left on queue.
Error: Invariant NoAckedStateLost is violated.
Error: The behavior up to this point is:
State 1: <Initial predicate>
/\\ role = <<"SYNCING", "SYNCING">>

State 2: <Promote(1) line 259, col 5 to line 281, col 63 of module sync_protocol>
/\\ role = <<"PRIMARY", "SYNCING">>

1708537 states generated, 664847 distinct states found, 328116 states left on queue.
The depth of the complete state graph search is 14.
Finished in 02min 13s at (2026-11-26 06:09:56)
"""

TEMPORAL_VIOLATED = """\
Implied-temporal checking--satisfiability problem has 1 branches.
Checking temporal properties for the current state space with 49853 total distinct \
states at (2026-11-26 06:41:15)
Error: Temporal property Converges was violated.

Error: The following behavior constitutes a counter-example:

State 1: <Initial predicate>

Back to state 11: <RecvState(1,2) line 618, col 5 to line 663, col 38 of module sync_protocol>

Finished checking temporal properties in 00s at 2026-11-26 06:41:15
179591 states generated, 60659 distinct states found, 10806 states left on queue.
The depth of the complete state graph search is 18.
Finished in 01min 05s at (2026-11-26 06:41:15)
"""

PARSE_ERROR = """\
Parsing file /work/main/spec/sync_protocol.tla
***Parse Error***
Encountered "Beginning of definition STATE" at line 60, column 1 and token "}"
Fatal errors while parsing TLA+ spec in file MC2.tla
"""

PASS_MODEL = tlc.Model("M", "M", tlc.Expect.PASS)
REACH_MODEL = tlc.Model("R", "M", tlc.Expect.VIOLATION, invariants=("Scenario1NotReached",))


def test_parse_success_with_figures():
    out = tlc.parse_output(PASSED)
    assert out.completed and not out.errors
    assert (out.generated, out.distinct, out.depth) == (7438173, 2744001, 49)
    assert out.finished_in == "07min 35s"
    assert out.violated_invariant is None and not out.temporal_violated
    assert tlc.verdict(PASS_MODEL, out) == (True, "pass")


def test_parse_invariant_violation():
    out = tlc.parse_output(INVARIANT_VIOLATED)
    assert not out.completed
    assert out.violated_invariant == "NoAckedStateLost"
    assert (out.distinct, out.depth) == (664847, 14)
    ok, line = tlc.verdict(PASS_MODEL, out)
    assert not ok and "NoAckedStateLost" in line
    # a reachability model that expects another invariant is not satisfied either
    assert not tlc.verdict(REACH_MODEL, out)[0]


def test_reachability_violated_as_intended():
    out = tlc.parse_output(INVARIANT_VIOLATED.replace("NoAckedStateLost", "Scenario1NotReached"))
    ok, line = tlc.verdict(REACH_MODEL, out)
    assert ok and line == "reachability violated as intended (Scenario1NotReached)"
    verdicts = dict(tlc.property_verdicts(REACH_MODEL, out, ["Scenario1NotReached"], []))
    assert verdicts == {"Scenario1NotReached": "violated as intended"}


def test_reachability_never_violated_is_a_failure():
    ok, line = tlc.verdict(REACH_MODEL, tlc.parse_output(PASSED))
    assert not ok and "not reached" in line


def test_parse_temporal_violation():
    out = tlc.parse_output(TEMPORAL_VIOLATED)
    assert out.temporal_violated and out.liveness_checked and not out.completed
    ok, line = tlc.verdict(PASS_MODEL, out)
    assert not ok and "Converges" in line
    verdicts = dict(tlc.property_verdicts(PASS_MODEL, out, ["TypeOK"], ["Converges"]))
    assert verdicts["Converges"].startswith("VIOLATED")
    assert verdicts["TypeOK"].startswith("not established")


UNFAIR_MODEL = tlc.Model("U", "M", tlc.Expect.VIOLATION, properties=("Converges",))


def test_non_vacuity_model_wants_its_property_violated():
    out = tlc.parse_output(TEMPORAL_VIOLATED)
    ok, line = tlc.verdict(UNFAIR_MODEL, out)
    assert ok and "Converges" in line and "not vacuous" in line
    verdicts = dict(tlc.property_verdicts(UNFAIR_MODEL, out, [], ["Converges"]))
    assert verdicts == {"Converges": "violated as intended"}
    ok, line = tlc.verdict(UNFAIR_MODEL, tlc.parse_output(PASSED))
    assert not ok and "vacuously" in line
    # another violation is no evidence for this one
    assert not tlc.verdict(UNFAIR_MODEL, tlc.parse_output(INVARIANT_VIOLATED))[0]


def test_manifest_entry_names_one_thing_to_violate(tmp_path):
    entry = '[[model]]\nname = "X"\nmodule = "M"\nexpect = "violation"\n'
    (tmp_path / tlc.MANIFEST).write_text(entry)
    with pytest.raises(tlc.SnepError, match="no invariant or property"):
        tlc.load_models(tmp_path)
    both = entry + 'invariants = ["I"]\nproperties = ["P"]\n'
    (tmp_path / tlc.MANIFEST).write_text(both)
    with pytest.raises(tlc.SnepError, match="exactly one"):
        tlc.load_models(tmp_path)


def test_manifest_defaults_sets_and_generated_configuration(tmp_path):
    (tmp_path / tlc.MANIFEST).write_text(
        '[defaults]\nNode = [1, 2]\nConn = ["c1"]\nLevel = "strong"\nSplitBrain = false\n'
        'model_values = ["NoConn"]\n[sets]\nsafety = ["TypeOK", "QueueBounded"]\n'
        '[[model]]\nname = "X"\nmodule = "M"\nexpect = "pass"\nspec = "FromSynced"\n'
        'constants = { Conn = ["c1", "c2"], SplitBrain = true }\nview = "V"\n'
        'invariants = ["@safety", "Extra"]\nproperties = ["P"]\ncheck_deadlock = false\n'
    )
    (model,) = tlc.load_models(tmp_path)
    assert model.invariants == ("TypeOK", "QueueBounded", "Extra")
    cfg = model.cfg_text()
    for line in (
        "    Node = {1, 2}", "    Conn = {c1, c2}", '    Level = "strong"', "    SplitBrain = TRUE",
        "    NoConn = NoConn", "SPECIFICATION FromSynced", "VIEW V",
        "INVARIANTS TypeOK QueueBounded Extra", "PROPERTIES P", "CHECK_DEADLOCK FALSE",
    ):
        assert line in cfg.splitlines(), line
    (tmp_path / tlc.MANIFEST).write_text(
        '[[model]]\nname = "X"\nmodule = "M"\nexpect = "pass"\ninvariants = ["@nope"]\n'
    )
    with pytest.raises(tlc.SnepError, match="unknown set @nope"):
        tlc.load_models(tmp_path)


def test_manifest_profile_replaces_the_defaults(tmp_path):
    """A model of another spec module (active_active.tla) takes its constants from its
    profile, none of [defaults]' (TLC refuses a constant the module does not declare)."""
    (tmp_path / tlc.MANIFEST).write_text(
        '[defaults]\nNode = [1, 2]\nConn = ["c1"]\nmodel_values = ["NoConn"]\n'
        '[profiles.aa]\nNode = [1, 2]\nConnGroups = [1]\nFailOpen = true\n'
        '[[model]]\nname = "X"\nmodule = "M"\nexpect = "pass"\nprofile = "aa"\n'
        'constants = { FailOpen = false }\n'
        '[[model]]\nname = "Y"\nmodule = "M"\nexpect = "pass"\n'
    )
    x, y = tlc.load_models(tmp_path)
    assert dict(x.constants) == {"Node": [1, 2], "ConnGroups": [1], "FailOpen": False}
    assert x.model_values == () and "NoConn" not in x.cfg_text() and "Conn =" not in x.cfg_text()
    assert dict(y.constants) == {"Node": [1, 2], "Conn": ["c1"]} and y.model_values == ("NoConn",)
    (tmp_path / tlc.MANIFEST).write_text('[[model]]\nname = "X"\nmodule = "M"\nexpect = "pass"\nprofile = "nope"\n')
    with pytest.raises(tlc.SnepError, match="unknown profile nope"):
        tlc.load_models(tmp_path)


def test_parse_error_is_reported():
    out = tlc.parse_output(PARSE_ERROR)
    assert not out.completed and out.errors
    ok, line = tlc.verdict(PASS_MODEL, out)
    assert not ok and "parse" in line


def test_killed_run_is_a_failure():
    out = tlc.parse_output(PASSED.split("Model checking completed")[0])
    ok, line = tlc.verdict(PASS_MODEL, out)
    assert not ok and "did not finish" in line


def _defined(module: str) -> set[str]:
    """The operators a model module defines or EXTENDS from spec/ (transitively)."""
    names: set[str] = set()
    todo, seen = [module], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in MODULES:
            continue  # a standard module (TLC, Naturals, ...)
        seen.add(name)
        text = MODULES[name].read_text()
        names |= set(re.findall(r"^(\w+)\s*(?:\([^)]*\))?\s*==", text, re.MULTILINE))
        extends = re.search(r"^EXTENDS\s+(.+)$", text, re.MULTILINE)
        if extends:
            todo += [part.strip() for part in extends.group(1).split(",")]
    return names


def test_manifest_models_exist_and_name_spec_invariants():
    models = tlc.load_models(SPEC)
    assert {m.expect for m in models} == {tlc.Expect.PASS, tlc.Expect.VIOLATION}
    for model in models:
        assert model.module in MODULES, model
        defined = _defined(model.module)
        assert set(model.invariants + model.properties) <= defined, model
        named = {model.specification, model.constraint, model.action_constraint, model.view, model.symmetry}
        assert named - {None} <= defined, model
    scenarios = {m.invariant for m in models if m.expect is tlc.Expect.VIOLATION}
    assert {"Scenario1NotReached", "Scenario2NotReached", "Scenario3NotReached",
            "Scenario4NotReached"} <= scenarios
    assert any(s.startswith("Scenario5") for s in scenarios)


def test_select_unknown_model_is_an_error():
    with pytest.raises(tlc.SnepError, match="unknown model"):
        tlc.select(tlc.load_models(SPEC), ["NoSuchModel"])


# --- the jar -----------------------------------------------------------------------


def test_jar_unset_says_what_to_do():
    with pytest.raises(tlc.TlcUnavailable, match="TLA2TOOLS_JAR is not set.*tla2tools.jar"):
        tlc.find_jar({})


def test_jar_missing(tmp_path):
    with pytest.raises(tlc.TlcUnavailable, match="no such file"):
        tlc.find_jar({"TLA2TOOLS_JAR": str(tmp_path / "nope.jar")})


def test_jar_not_a_jar(tmp_path):
    bogus = tmp_path / "tla2tools.jar"
    bogus.write_text("not a zip")
    with pytest.raises(tlc.TlcUnavailable, match="not a tla2tools.jar"):
        tlc.find_jar({"TLA2TOOLS_JAR": str(bogus)})
    other = tmp_path / "other.jar"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("x.class", b"")
    with pytest.raises(tlc.TlcUnavailable, match="no tlc2/TLC.class"):
        tlc.find_jar({"TLA2TOOLS_JAR": str(other)})


def _snep(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snep.cli", "spec", *args],
        capture_output=True,
        text=True,
        env=env,
    )


def test_check_without_jar_exits_with_clear_message():
    env = {k: v for k, v in os.environ.items() if k != "TLA2TOOLS_JAR"}
    result = _snep("check", "Three", env=env)
    assert result.returncode == 3
    assert "cannot run TLC" in result.stderr and "TLA2TOOLS_JAR is not set" in result.stderr


def test_list_shows_every_model():
    result = _snep("list", env=dict(os.environ))
    assert result.returncode == 0
    for model in tlc.load_models(SPEC):
        assert model.name in result.stdout


# --- a real TLC run ----------------------------------------------------------------

SMALLEST = "Scenario1"


@pytest.mark.tlc
@pytest.mark.slow
def test_check_smallest_model_with_tlc():
    try:
        tlc.find_jar()
        tlc.find_java()
    except tlc.TlcUnavailable as error:
        pytest.skip(f"TLC unavailable: {error}")
    before = sorted(p.name for p in SPEC.iterdir())
    result = _snep("check", SMALLEST, "--workers", "1", env=dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reachability violated as intended" in result.stdout
    assert "1/1 models as expected" in result.stdout
    assert sorted(p.name for p in SPEC.iterdir()) == before  # no states/ in the repo


# --- the spec's mutants ------------------------------------------------------------


def test_every_mutant_applies_to_the_spec_and_names_known_models():
    from snep.lab import mutants

    planted = mutants.load_mutants(SPEC)
    assert len(planted) >= 12
    names = {model.name for model in tlc.load_models(SPEC)}
    for mutant in planted:
        spec = (SPEC / mutant.file).read_text()
        assert set(mutant.models) <= names, mutant.name
        assert mutant.apply(spec) != spec, mutant.name
    assert {"release_before_ack", "take_back_unsynced"} <= {m.name for m in planted}
    assert {m.file for m in planted} == {"sync_protocol.tla", "active_active.tla"}


def test_a_mutant_of_a_module_that_does_not_exist_is_an_error():
    from snep.lab import mutants

    ghost = mutants.Mutant("ghost", "none", ("AA",), (("x", "y"),), file="no_such.tla")
    with pytest.raises(tlc.SnepError, match="no module no_such.tla"):
        mutants.check_mutant(ghost, tlc.load_models(SPEC), spec_dir=SPEC)


def test_a_mutant_that_no_longer_applies_is_an_error():
    from snep.lab import mutants

    stale = mutants.Mutant("stale", "gone", ("Start",), (("no such text in the spec", "x"),))
    with pytest.raises(tlc.SnepError, match="occurs 0 times"):
        stale.apply((SPEC / "sync_protocol.tla").read_text())


@pytest.mark.tlc
@pytest.mark.slow
def test_a_mutant_is_caught_with_tlc():
    """One mutant end to end: planted in a scratch copy, caught by its model."""
    try:
        tlc.find_jar()
        tlc.find_java()
    except tlc.TlcUnavailable as error:
        pytest.skip(f"TLC unavailable: {error}")
    before = sorted(p.name for p in SPEC.rglob("*"))
    result = _snep("mutants", "no_resend_queue", "--workers", "1", env=dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "caught by Scenario5a" in result.stdout and "1/1 mutants caught" in result.stdout
    assert sorted(p.name for p in SPEC.rglob("*")) == before
