"""Running TLC (the TLA+ model checker) on the spec's models, and reading its verdict.

Every model is defined once, in ``spec/models.toml``: its MC module, specification,
constants (over shared defaults), constraint, view, symmetry, invariants and
properties, and what TLC must say (``pass``: no error; ``violation``: the named
"... not reached" invariant is violated, which shows the scenario happens in the
model, or the named temporal property is, which shows it is not vacuous). The TLC
configuration is generated from that entry. TLC is not on any package registry:
snep finds ``tla2tools.jar`` only through ``TLA2TOOLS_JAR``.

TLC runs in a temporary, flat copy of spec/ (the spec, and the models from
spec/models/; ``-metadir`` inside it), so no ``states/`` directory or trace file ever
lands in the repository. ``snep spec check`` uses this
module; trace validation (``snep spec trace-check``) can reuse :func:`run_tlc`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from snep.errors import SnepError

JAR_ENV = "TLA2TOOLS_JAR"
SPEC_DIR = Path(__file__).resolve().parents[2] / "spec"
MANIFEST = "models.toml"


class TlcUnavailable(SnepError):
    """TLC cannot run: TLA2TOOLS_JAR unset, missing, unreadable, or not a jar; no java."""


class Expect(Enum):
    PASS = "pass"
    VIOLATION = "violation"


@dataclass(frozen=True)
class Model:
    """One TLC run: a module, its configuration, and the verdict it must give."""

    name: str
    module: str
    expect: Expect
    specification: str = "Spec"
    constants: tuple[tuple[str, object], ...] = ()  # name -> value, in the manifest's order
    model_values: tuple[str, ...] = ()  # constants that are model values of their own name
    invariants: tuple[str, ...] = ()
    properties: tuple[str, ...] = ()
    constraint: str | None = None
    action_constraint: str | None = None
    view: str | None = None
    symmetry: str | None = None
    check_deadlock: bool = True
    about: str = ""
    slow: bool = False

    @property
    def config(self) -> str:
        """The file name the generated configuration is written to."""
        return f"{self.name}.cfg"

    @property
    def invariant(self) -> str | None:
        """The invariant a reachability model must violate."""
        return self.invariants[0] if self.expect is Expect.VIOLATION and self.invariants else None

    @property
    def temporal_property(self) -> str | None:
        """The property a non-vacuity model must violate."""
        if self.expect is Expect.VIOLATION and not self.invariants and self.properties:
            return self.properties[0]
        return None

    def cfg_text(self) -> str:
        """The TLC configuration of this model."""
        lines = [f"\\* {self.name}: {self.about}".rstrip(), "CONSTANTS"]
        for name, value in self.constants:
            lines.append(f"    {name} = {_tla_value(value)}")
        for name in self.model_values:
            lines.append(f"    {name} = {name}")
        lines.append(f"SPECIFICATION {self.specification}")
        for keyword, value in (
            ("CONSTRAINT", self.constraint),
            ("ACTION_CONSTRAINT", self.action_constraint),
            ("VIEW", self.view),
            ("SYMMETRY", self.symmetry),
        ):
            if value:
                lines.append(f"{keyword} {value}")
        if self.invariants:
            lines.append("INVARIANTS " + " ".join(self.invariants))
        if self.properties:
            lines.append("PROPERTIES " + " ".join(self.properties))
        if not self.check_deadlock:
            lines.append("CHECK_DEADLOCK FALSE")
        return "\n".join(lines) + "\n"


def _tla_value(value: object) -> str:
    """A manifest value in TLA+: a list of names is a set of model values."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "{" + ", ".join(item if isinstance(item, str) else _tla_value(item) for item in value) + "}"
    raise SnepError(f"cannot write {value!r} as a TLA+ constant")


@dataclass(frozen=True)
class TlcOutcome:
    """What TLC printed, reduced to the facts snep reports."""

    completed: bool  # "Model checking completed. No error has been found."
    violated_invariant: str | None = None
    violated_property: str | None = None  # action or temporal property
    temporal_violated: bool = False
    deadlock: bool = False
    errors: tuple[str, ...] = ()  # other "Error:" lines, parse/semantic errors
    generated: int | None = None
    distinct: int | None = None
    depth: int | None = None
    finished_in: str | None = None  # as TLC printed it, e.g. "03min 12s"
    liveness_checked: bool = False


@dataclass(frozen=True)
class ModelResult:
    model: Model
    outcome: TlcOutcome
    seconds: float
    properties: tuple[tuple[str, str], ...] = field(default=())  # (name, verdict)

    @property
    def ok(self) -> bool:
        """Did TLC say what the model expects?"""
        return verdict(self.model, self.outcome)[0]

    @property
    def summary(self) -> str:
        return verdict(self.model, self.outcome)[1]


# --- the jar -----------------------------------------------------------------------


def find_jar(environ: Mapping[str, str] | None = None) -> Path:
    """The tla2tools.jar named by TLA2TOOLS_JAR, checked to be a readable jar."""
    environ = os.environ if environ is None else environ
    value = environ.get(JAR_ENV, "").strip()
    if not value:
        raise TlcUnavailable(
            f"{JAR_ENV} is not set: TLC (the TLA+ model checker) is needed. Download "
            "tla2tools.jar from https://github.com/tlaplus/tlaplus/releases and set "
            f"{JAR_ENV}=/path/to/tla2tools.jar"
        )
    jar = Path(value)
    if not jar.is_file():
        raise TlcUnavailable(f"{JAR_ENV}={value}: no such file")
    if not os.access(jar, os.R_OK):
        raise TlcUnavailable(f"{JAR_ENV}={value}: not readable")
    try:
        with zipfile.ZipFile(jar) as archive:
            archive.getinfo("tlc2/TLC.class")
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise TlcUnavailable(
            f"{JAR_ENV}={value}: not a tla2tools.jar (no tlc2/TLC.class: {error})"
        ) from None
    return jar


def find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise TlcUnavailable("java is not on PATH: TLC needs a Java runtime (11 or newer)")
    return java


# --- the manifest ------------------------------------------------------------------


def load_models(spec_dir: Path = SPEC_DIR) -> list[Model]:
    """The models of spec/models.toml, in file order.

    ``[defaults]`` holds the constants every model starts from (``model_values``: the
    constants that are model values of their own name) and named lists of
    invariants or properties (``[sets]``) that a model's lists may include as
    ``"@name"``. A model of another spec module names its own defaults with ``profile``
    (``[profiles.NAME]``, used instead of ``[defaults]``).
    """
    path = spec_dir / MANIFEST
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise SnepError(f"{path}: {error}") from None
    defaults = dict(data.get("defaults", {}))
    model_values = tuple(defaults.pop("model_values", ()))
    # [profiles.NAME]: the defaults of another spec's models (a model says profile = NAME)
    profiles = {name: dict(table) for name, table in data.get("profiles", {}).items()}
    sets = {name: list(names) for name, names in data.get("sets", {}).items()}

    def names(entry: dict, key: str) -> tuple[str, ...]:
        out: list[str] = []
        for item in entry.get(key, []):
            if item.startswith("@"):
                if item[1:] not in sets:
                    raise SnepError(f"{path}: model {entry.get('name')}: unknown set {item}")
                out.extend(sets[item[1:]])
            else:
                out.append(item)
        return tuple(dict.fromkeys(out))

    models = []
    for entry in data.get("model", []):
        try:
            base, values = defaults, model_values
            if "profile" in entry:
                if entry["profile"] not in profiles:
                    raise SnepError(f"{path}: model {entry.get('name')}: unknown profile {entry['profile']}")
                base = dict(profiles[entry["profile"]])
                values = tuple(base.pop("model_values", ()))
            constants = {**base, **entry.get("constants", {})}
            model = Model(
                name=entry["name"],
                module=entry["module"],
                expect=Expect(entry["expect"]),
                specification=entry.get("spec", "Spec"),
                constants=tuple(constants.items()),
                model_values=values,
                invariants=names(entry, "invariants"),
                properties=names(entry, "properties"),
                constraint=entry.get("constraint"),
                action_constraint=entry.get("action_constraint"),
                view=entry.get("view"),
                symmetry=entry.get("symmetry"),
                check_deadlock=bool(entry.get("check_deadlock", True)),
                about=entry.get("about", ""),
                slow=bool(entry.get("slow", False)),
            )
        except (KeyError, ValueError) as error:
            raise SnepError(f"{path}: bad model entry {entry!r}: {error}") from None
        if model.expect is Expect.VIOLATION and not (model.invariants or model.properties):
            raise SnepError(f"{path}: model {model.name} expects a violation of no invariant or property")
        if model.expect is Expect.VIOLATION and len(model.invariants) + len(model.properties) != 1:
            raise SnepError(f"{path}: model {model.name} must name exactly one invariant or property to violate")
        models.append(model)
    return models


def select(models: Sequence[Model], names: Sequence[str]) -> list[Model]:
    """The named models (all when no name is given); unknown names are an error."""
    if not names:
        return list(models)
    by_name = {model.name: model for model in models}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise SnepError(
            f"unknown model(s) {', '.join(unknown)}; known: {', '.join(by_name)}"
        )
    return [by_name[name] for name in names]


# --- TLC's output ------------------------------------------------------------------

_INT = r"([\d,]+)"
_STATS = re.compile(
    rf"^{_INT} states generated, {_INT} distinct states found, {_INT} states left on queue",
    re.MULTILINE,
)
_DEPTH = re.compile(r"depth of the complete state graph search is (\d+)")
_FINISHED = re.compile(r"^Finished in (.+?) at \(", re.MULTILINE)
_INVARIANT = re.compile(r"^Error: Invariant (\w+) is violated", re.MULTILINE)
_PROPERTY = re.compile(
    r"^Error: (?:Action |Temporal )?[Pp]roperty (\w+) (?:is|was) violated", re.MULTILINE
)
_ERROR = re.compile(r"^Error: (.*)$", re.MULTILINE)


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def parse_output(text: str) -> TlcOutcome:
    """Reduce TLC's printed output to a :class:`TlcOutcome`."""
    stats = _STATS.findall(text)
    depth = _DEPTH.search(text)
    finished = _FINISHED.search(text)
    invariant = _INVARIANT.search(text)
    prop = _PROPERTY.search(text)
    errors = [
        line
        for line in _ERROR.findall(text)
        if not line.startswith(("The behavior up to this point", "The error occurred"))
    ]
    if "***Parse Error***" in text or "Semantic errors:" in text:
        errors.append("the spec does not parse (SANY)")
    if "Fatal errors while parsing" in text:
        errors.append("fatal errors while parsing the spec")
    return TlcOutcome(
        completed="Model checking completed. No error has been found." in text,
        violated_invariant=invariant.group(1) if invariant else None,
        violated_property=prop.group(1) if prop else None,
        temporal_violated="Temporal properties were violated" in text
        or "Error: Temporal property" in text,
        deadlock="Error: Deadlock reached" in text,
        errors=tuple(errors),
        generated=_number(stats[-1][0]) if stats else None,
        distinct=_number(stats[-1][1]) if stats else None,
        depth=int(depth.group(1)) if depth else None,
        finished_in=finished.group(1) if finished else None,
        liveness_checked="Checking temporal properties for the complete state space" in text
        or "Finished checking temporal properties" in text,
    )


def verdict(model: Model, outcome: TlcOutcome) -> tuple[bool, str]:
    """(as expected?, one line for the report)."""
    if model.expect is Expect.PASS:
        if outcome.completed and not outcome.errors:
            return True, "pass"
        return False, "FAIL: " + _what_went_wrong(outcome)
    if model.temporal_property:
        if outcome.violated_property == model.temporal_property:
            return True, f"property violated as intended ({model.temporal_property}: not vacuous)"
        if outcome.completed:
            return False, f"FAIL: {model.temporal_property} never violated: it may hold vacuously"
        return False, "FAIL: " + _what_went_wrong(outcome)
    if outcome.violated_invariant == model.invariant:
        return True, f"reachability violated as intended ({model.invariant})"
    if outcome.completed:
        return False, f"FAIL: {model.invariant} never violated: the scenario is not reached"
    return False, "FAIL: " + _what_went_wrong(outcome)


def _what_went_wrong(outcome: TlcOutcome) -> str:
    if outcome.violated_invariant:
        return f"invariant {outcome.violated_invariant} violated"
    if outcome.violated_property:
        return f"property {outcome.violated_property} violated"
    if outcome.temporal_violated:
        return "temporal property violated"
    if outcome.deadlock:
        return "deadlock reached"
    if outcome.errors:
        return "; ".join(outcome.errors)
    return "TLC did not finish (killed, timed out or out of memory?)"


def property_verdicts(
    model: Model, outcome: TlcOutcome, invariants: Sequence[str], properties: Sequence[str]
) -> tuple[tuple[str, str], ...]:
    """One verdict per invariant/property the .cfg lists."""
    result = []
    intended = {model.invariant, model.temporal_property} - {None}
    for name in [*invariants, *properties]:
        if name == outcome.violated_invariant or name == outcome.violated_property:
            state = (
                "violated as intended"
                if model.expect is Expect.VIOLATION and name in intended
                else "VIOLATED"
            )
        elif name in properties and outcome.temporal_violated:
            state = "VIOLATED (temporal)"
        elif outcome.completed and not outcome.errors:
            state = "holds"
        elif model.expect is Expect.VIOLATION and name in intended:
            state = "NOT violated"
        else:
            state = "not established (TLC stopped early)"
        result.append((name, state))
    return tuple(result)


# --- running -----------------------------------------------------------------------


def tlc_command(
    java: str, jar: Path, module: str, config: str, metadir: Path, *, workers: int, heap: str
) -> list[str]:
    return [
        java,
        "-XX:+UseParallelGC",
        f"-Xmx{heap}",
        "-cp",
        str(jar),
        "tlc2.TLC",
        "-workers",
        str(workers),
        "-noGenerateSpecTE",
        "-nowarning",
        "-metadir",
        str(metadir),
        "-config",
        config,
        f"{module}.tla",
    ]


def run_tlc(
    module: str,
    config: str,
    *,
    spec_dir: Path = SPEC_DIR,
    jar: Path | None = None,
    workers: int = 2,
    heap: str = "2g",
    timeout: float | None = None,
    extra_files: Mapping[str, str] | None = None,
) -> tuple[str, float]:
    """Run TLC on ``module`` with ``config`` in a temporary copy of ``spec_dir``.

    Returns (TLC's combined output, seconds). ``extra_files`` (name -> text) are
    written into the copy first (a trace module, a generated .cfg ...). Nothing is
    written into ``spec_dir``.
    """
    jar = find_jar() if jar is None else jar
    java = find_java()
    with tempfile.TemporaryDirectory(prefix="snep-tlc-") as tmp:
        work = Path(tmp) / "spec"
        work.mkdir()
        for source in spec_files(spec_dir):
            shutil.copyfile(source, work / source.name)
        for model in load_models(spec_dir):
            (work / model.config).write_text(model.cfg_text())
        for name, text in (extra_files or {}).items():
            (work / name).write_text(text)
        command = tlc_command(
            java, jar, module, config, Path(tmp) / "states", workers=workers, heap=heap
        )
        start = time.monotonic()
        try:
            done = subprocess.run(
                command, cwd=work, capture_output=True, text=True, timeout=timeout
            )
            output = done.stdout + done.stderr
        except subprocess.TimeoutExpired as expired:
            output = _text(expired.stdout) + _text(expired.stderr)
            output += f"\nsnep: TLC killed after the {timeout:.0f} s timeout\n"
        return output, time.monotonic() - start


def spec_files(spec_dir: Path = SPEC_DIR) -> list[Path]:
    """The spec's modules and the models' modules and configurations (spec/, spec/models/)."""
    return sorted(p for p in (*spec_dir.glob("*"), *spec_dir.glob("models/*")) if p.suffix in (".tla", ".cfg"))


def spec_file(name: str, spec_dir: Path = SPEC_DIR) -> Path:
    """A module (``MC2.tla``) or configuration (``MC2.cfg``) by its file name."""
    for path in spec_files(spec_dir):
        if path.name == name:
            return path
    raise SnepError(f"{name}: no such file in {spec_dir} or {spec_dir / 'models'}")


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def check_model(
    model: Model,
    *,
    spec_dir: Path = SPEC_DIR,
    jar: Path | None = None,
    workers: int = 2,
    heap: str = "2g",
    timeout: float | None = None,
) -> ModelResult:
    """Run one model and judge TLC's verdict against what the model expects."""
    output, seconds = run_tlc(
        model.module,
        model.config,
        spec_dir=spec_dir,
        jar=jar,
        workers=workers,
        heap=heap,
        timeout=timeout,
    )
    outcome = parse_output(output)
    return ModelResult(
        model=model,
        outcome=outcome,
        seconds=seconds,
        properties=property_verdicts(model, outcome, model.invariants, model.properties),
    )
