"""The spec's mutation score: realistic faults planted in a copy of the spec, each of
which some model must catch.

A mutant is a file ``spec/mutants/NAME.toml``: what fault it plants (``about``), the
models that must catch it (``models``, tried in order until one does), and one or
more textual replacements of a spec module (``file``, default
``sync_protocol.tla``; ``[[replace]]`` with ``find`` and ``with``; each ``find`` must
occur exactly once, so a mutant that no longer applies to the spec is an error, never
a silent pass).

A model *catches* a mutant when TLC's verdict on the mutated spec differs from the
one the model expects on the real spec: a model that must pass finds a violation, or
a reachability model's scenario is no longer reached. A mutant that does not parse
catches nothing: it is reported as broken. The score is a property of the models as
much as of the spec: a property that holds by construction, or a model whose
environment never exercises it, leaves its mutants alive.
"""

from __future__ import annotations

import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from snep.errors import SnepError
from snep.lab import tlc

MUTANTS_DIR = "mutants"
SPEC_FILE = "sync_protocol.tla"


@dataclass(frozen=True)
class Mutant:
    """One planted fault: replacements of the spec's text, and the models that catch it."""

    name: str
    about: str
    models: tuple[str, ...]
    replacements: tuple[tuple[str, str], ...]
    file: str = SPEC_FILE  # the module the fault is planted in

    def apply(self, spec: str) -> str:
        """The mutated spec; SnepError when a replacement does not apply exactly once."""
        for find, replacement in self.replacements:
            count = spec.count(find)
            if count != 1:
                raise SnepError(
                    f"mutant {self.name}: the text to replace occurs {count} times in {self.file}"
                    f" (it must occur once): {find.strip()[:80]!r}"
                )
            spec = spec.replace(find, replacement)
        return spec


@dataclass(frozen=True)
class MutantResult:
    mutant: Mutant
    caught_by: str | None  # the model whose verdict changed, None: alive
    broken: str | None  # why the mutated spec could not be checked
    runs: tuple[tuple[str, tlc.ModelResult], ...]  # (model, result) in the order tried

    @property
    def caught(self) -> bool:
        return self.caught_by is not None


def load_mutants(spec_dir: Path = tlc.SPEC_DIR) -> list[Mutant]:
    """Every mutant of spec/mutants/, by name."""
    mutants = []
    for path in sorted((spec_dir / MUTANTS_DIR).glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text())
            mutant = Mutant(
                name=path.stem,
                about=data["about"],
                models=tuple(data["models"]),
                replacements=tuple((r["find"], r["with"]) for r in data["replace"]),
                file=data.get("file", SPEC_FILE),
            )
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as error:
            raise SnepError(f"{path}: {error}") from None
        if not mutant.models or not mutant.replacements:
            raise SnepError(f"{path}: a mutant needs models and at least one replacement")
        mutants.append(mutant)
    return mutants


def check_mutant(
    mutant: Mutant,
    models: Sequence[tlc.Model],
    *,
    spec_dir: Path = tlc.SPEC_DIR,
    jar: Path | None = None,
    workers: int = 2,
    heap: str = "2g",
    timeout: float | None = None,
) -> MutantResult:
    """Run the mutant's models on a scratch copy of the spec with the fault planted."""
    by_name = {model.name: model for model in models}
    unknown = [name for name in mutant.models if name not in by_name]
    if unknown:
        raise SnepError(f"mutant {mutant.name}: unknown model(s) {', '.join(unknown)}")
    if not (spec_dir / mutant.file).is_file():
        raise SnepError(f"mutant {mutant.name}: no module {mutant.file} in {spec_dir}")
    mutated = mutant.apply((spec_dir / mutant.file).read_text())
    runs: list[tuple[str, tlc.ModelResult]] = []
    with tempfile.TemporaryDirectory(prefix="snep-mutant-") as tmp:
        scratch = Path(tmp)
        for source in tlc.spec_files(spec_dir):
            target = scratch / source.relative_to(spec_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(mutated if source.name == mutant.file else source.read_text())
        (scratch / tlc.MANIFEST).write_text((spec_dir / tlc.MANIFEST).read_text())
        for name in mutant.models:
            result = tlc.check_model(
                by_name[name], spec_dir=scratch, jar=jar, workers=workers, heap=heap, timeout=timeout
            )
            runs.append((name, result))
            if result.outcome.errors and not (
                result.outcome.violated_invariant or result.outcome.violated_property
            ):
                return MutantResult(mutant, None, "; ".join(result.outcome.errors), tuple(runs))
            if not result.ok and _finished(result.outcome):
                return MutantResult(mutant, name, None, tuple(runs))
    return MutantResult(mutant, None, None, tuple(runs))


def _finished(outcome: tlc.TlcOutcome) -> bool:
    """Did TLC reach a verdict (a violation, or the whole state space)?"""
    return bool(
        outcome.completed
        or outcome.violated_invariant
        or outcome.violated_property
        or outcome.temporal_violated
        or outcome.deadlock
    )
