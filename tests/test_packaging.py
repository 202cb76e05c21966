"""snep as a user installs it: the wheel and the sdist build without a warning; the wheel
holds what ``snep run`` needs, the manual pages and the examples, and nothing of the
tests; installed into a fresh virtualenv (and with pipx, where it is installed) it is a
working ``snep``, which says so when a command needs the source tree; ``make install``
puts the system files in their places."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.configs import ROOT, contrib_config

pytestmark = pytest.mark.slow

#: what a copy of the working tree leaves out (as a fresh clone would not have it)
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", "build", "dist", "*.egg-info",
                                     ".pytest_cache", ".hypothesis", "states", "*_TTrace_*", "*.jar")


def _env() -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH into this tree, bytecode allowed
    (PYTHONDONTWRITEBYTECODE makes setuptools warn that it skips byte-compiling)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the working tree (a build writes snep.egg-info into its source)."""
    src = tmp_path_factory.mktemp("src") / "snep"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
    return src


@pytest.fixture(scope="module")
def built(source: Path) -> tuple[Path, Path, str]:
    """(wheel, sdist, the build's output)."""
    if importlib.util.find_spec("build") is None:
        pytest.skip("the build package is not installed (pip install -e '.[test]')")
    out = source.parent / "dist"
    result = _run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], source.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("snep-*.whl")
    (sdist,) = out.glob("snep-*.tar.gz")
    return wheel, sdist, result.stdout + result.stderr


def test_the_build_prints_no_warning(built: tuple[Path, Path, str]) -> None:
    output = built[2]
    warnings = [line for line in output.splitlines() if "warn" in line.lower() or "deprecat" in line.lower()]
    assert not warnings, "\n".join(warnings)


def test_the_wheel_holds_the_package_pages_and_examples_and_no_tests(built: tuple[Path, Path, str]) -> None:
    names = set(zipfile.ZipFile(built[0]).namelist())
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "snep").rglob("*.py")}
    assert not modules - names, f"missing from the wheel: {sorted(modules - names)}"
    data = "snep-0.1.0.data/data/share"
    for path in ("man/man8/snep.8", "man/man5/snep.toml.5", "doc/snep/examples/snep.toml",
                 "doc/snep/examples/snep.service", "doc/snep/examples/keepalived.conf"):
        assert f"{data}/{path}" in names
    strays = sorted(n for n in names if n.split("/")[0] in ("tests", "model_tests", "spec", "bench")
                    or n.endswith("conftest.py"))
    assert not strays, strays


def test_the_sdist_holds_what_make_install_and_a_rebuild_need(built: tuple[Path, Path, str]) -> None:
    names = {n.split("/", 1)[1] for n in tarfile.open(built[1]).getnames() if "/" in n}
    for path in ("pyproject.toml", "Makefile", "README.md", "man/snep.8", "man/snep.toml.5",
                 "contrib/snep.service", "docs/migration.md", "snep/cli.py"):
        assert path in names, path


@pytest.fixture(scope="module")
def venv(built: tuple[Path, Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed; its bin directory."""
    where = tmp_path_factory.mktemp("venv")
    assert _run([sys.executable, "-m", "venv", str(where / "venv")], where).returncode == 0
    bin_dir = where / "venv" / "bin"
    result = _run([str(bin_dir / "pip"), "install", "-q", str(built[0])], where)
    assert result.returncode == 0, result.stdout + result.stderr
    return bin_dir


def test_the_installed_snep_works(venv: Path, tmp_path: Path) -> None:
    snep = str(venv / "snep")
    assert _run([snep, "--version"], tmp_path).stdout.strip() == "snep 0.1.0"
    check = _run([snep, "run", "--check", "--config", str(contrib_config(tmp_path))], tmp_path)
    assert check.returncode == 0 and "ok (node 1" in check.stdout, check.stderr
    where = _run([str(venv / "python"), "-c", "import snep, snep.runtime.daemon, snep.kernel.netlink; "
                  "print(snep.__file__)"], tmp_path)
    assert where.returncode == 0 and str(venv.parent) in where.stdout, where.stdout + where.stderr
    assert _run([snep, "conformance", "--list"], tmp_path).returncode == 0  # the lab is in the package
    pages = _run([snep, "man", "--out", str(tmp_path / "man")], tmp_path)
    assert pages.returncode == 0 and (tmp_path / "man" / "snep.8").read_text() == (ROOT / "man" / "snep.8").read_text()


def test_a_command_that_needs_the_source_tree_says_so(venv: Path, tmp_path: Path) -> None:
    result = _run([str(venv / "snep"), "spec", "list"], tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "needs the TLA+ specification (spec/ of snep's source tree)" in result.stderr
    assert "an installed package does not carry" in result.stderr


def test_man_finds_the_installed_pages(venv: Path, tmp_path: Path) -> None:
    if shutil.which("man") is None:
        pytest.skip("man-db is not installed (make debs)")
    env = {**_env(), "PATH": f"{venv}:/usr/bin:/bin", "MANPATH": ""}
    found = subprocess.run(["man", "-w", "snep.toml"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert found.stdout.strip() == str(venv.parent / "share" / "man" / "man5" / "snep.toml.5"), found.stderr


def test_pipx_install_gives_a_working_snep(source: Path, tmp_path: Path) -> None:
    if shutil.which("pipx") is None:
        pytest.skip("pipx is not installed (make debs)")
    env = {**_env(), "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin")}
    result = subprocess.run(["pipx", "install", str(source)], env=env, capture_output=True, text=True,
                            cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    version = subprocess.run([str(tmp_path / "bin" / "snep"), "--version"], env=env, capture_output=True, text=True)
    assert version.stdout.strip() == "snep 0.1.0"


def test_make_install_puts_the_system_files_in_their_places(tmp_path: Path) -> None:
    dest = tmp_path / "root"

    def install(*args: str) -> None:
        result = subprocess.run(["make", "-s", "-C", str(ROOT), f"DESTDIR={dest}", *args],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr

    install("install", "PREFIX=/usr/local")
    usr = dest / "usr" / "local"
    for path, mode in ((usr / "share/man/man8/snep.8", 0o644), (usr / "share/man/man5/snep.toml.5", 0o644),
                       (usr / "lib/systemd/system/snep.service", 0o644),
                       (usr / "share/doc/snep/examples/snep.toml", 0o644),
                       (usr / "share/doc/snep/examples/keepalived.conf", 0o644),
                       (dest / "etc/snep", 0o700), (dest / "etc/snep/snep.toml", 0o644)):
        assert path.exists(), path
        assert path.stat().st_mode & 0o777 == mode, (path, oct(path.stat().st_mode))
    assert (usr / "share/man/man8/snep.8").read_text() == (ROOT / "man/snep.8").read_text()
    unit = (usr / "lib/systemd/system/snep.service").read_text()
    assert "ExecStart=/usr/local/bin/snep run --config /etc/snep/snep.toml\n" in unit

    (dest / "etc/snep/snep.toml").write_text("# the admin's\n")
    install("install", "PREFIX=/usr")  # another prefix; the config stays the admin's
    assert (dest / "etc/snep/snep.toml").read_text() == "# the admin's\n"
    unit = (dest / "usr/lib/systemd/system/snep.service").read_text()
    assert "ExecStart=/usr/bin/snep run" in unit and "/usr/local/bin" not in unit
    assert '"/usr/bin/snep notify' in (dest / "usr/share/doc/snep/examples/keepalived.conf").read_text()

    install("uninstall", "PREFIX=/usr/local")
    assert not (usr / "share/man/man8/snep.8").exists() and not (usr / "lib/systemd/system/snep.service").exists()
    assert (dest / "etc/snep/snep.toml").exists()
