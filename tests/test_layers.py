"""The package's layers hold: one import name, a core that knows no side, optional parts that stay optional.

- The wheel's only top-level import package is ``nitrokit``; pyproject.toml lists every package folder.
- The core (common/) imports nothing from nitrokit.enclave or nitrokit.parent, by statement or by string, and
  the two sides never import each other (checked on the source, with ast).
- Production modules import no test support (simulated NSM, fixture PKI, simulated KMS) and no boto3 unless
  asked; the pytest plugin imports nothing heavy until a fixture is used.
- In a venv with the core install only (no boto3), ``nitrokit verify`` and every ``nitrokit enclave`` command
  work, and the commands that need an extra say which one.
- A user project with its own ``common``, ``enclave`` and ``parent`` packages runs its tests beside nitrokit.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import REPO

FOLDERS = {"nitrokit": REPO / "common", "nitrokit.enclave": REPO / "enclave", "nitrokit.parent": REPO / "parent"}
SIDES = ("nitrokit.enclave", "nitrokit.parent")
OLD_NAMES = ("common", "enclave", "parent")


# --- imports, read from the source -----------------------------------------------------------------------

def _modules(package: str) -> list[Path]:
    return sorted(FOLDERS[package].rglob("*.py"))


def _docstring_nodes(tree: ast.AST) -> set[int]:
    nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                nodes.add(id(first.value))
    return nodes


def imported_names(path: Path) -> list[tuple[int, str]]:
    """Every module a file names: import statements, and string constants that look like a module path.

    Strings count because importlib.import_module, entry points, mock.patch and ``-m`` take module names as
    strings; docstrings do not (they describe, they do not load).
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = _docstring_nodes(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.extend((node.lineno, word.strip("'\"`:,()")) for word in node.value.split()
                         if word.strip("'\"`:,()").startswith("nitrokit."))
    return found


def _violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{path.relative_to(REPO)}:{line}: {name}" for path in _modules(package)
            for line, name in imported_names(path)
            if any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden)]


def test_the_core_imports_no_side_by_statement_or_string() -> None:
    assert _violations("nitrokit", SIDES) == []


def test_the_sides_do_not_import_each_other() -> None:
    assert _violations("nitrokit.enclave", ("nitrokit.parent",)) == []
    assert _violations("nitrokit.parent", ("nitrokit.enclave",)) == []


def test_nothing_imports_the_old_top_level_names() -> None:
    everywhere = [path for folder in ("common", "enclave", "parent", "tests", "bench", "fuzz", "fixtures")
                  for path in (REPO / folder).rglob("*.py")]
    bad = [f"{path.relative_to(REPO)}:{line}: {name}" for path in everywhere for line, name in imported_names(path)
           if name.split(".")[0] in OLD_NAMES]
    assert bad == []


def test_the_checker_sees_a_side_imported_by_string_or_statement(tmp_path: Path) -> None:
    """The check above can fail: each way of naming a side is found."""
    sample = tmp_path / "sample.py"
    sample.write_text(textwrap.dedent('''
        """Docstrings may mention nitrokit.enclave.cli."""
        import importlib
        from nitrokit.parent import proxy
        import nitrokit.enclave.keys
        from nitrokit import enclave
        importlib.import_module("nitrokit.parent.cli")
    '''))
    names = [name for _, name in imported_names(sample)]
    assert "nitrokit.parent" in names and "nitrokit.enclave.keys" in names and "nitrokit.enclave" in names
    assert "nitrokit.parent.cli" in names and "nitrokit.enclave.cli" not in names


def test_pyproject_lists_every_package_folder() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    found = {".".join([package, *init.parent.relative_to(folder).parts])
             for package, folder in FOLDERS.items() for init in folder.rglob("__init__.py")}
    assert listed == found
    assert project["tool"]["setuptools"]["package-dir"] == {name: str(path.relative_to(REPO))
                                                            for name, path in FOLDERS.items()}


# --- what importing costs ------------------------------------------------------------------------------

def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True,
                            cwd=REPO)
    return set(result.stdout.split())


TEST_SUPPORT = ("nitrokit.testing", "nitrokit.testing.pki", "nitrokit.kms.server", "nitrokit.kms._service",
                "nitrokit.enclave.nsm.simulated", "boto3", "botocore")


def test_production_modules_and_the_whole_cli_load_no_test_support_or_boto3() -> None:
    loaded = _loaded_after(textwrap.dedent("""
        import nitrokit.attestation, nitrokit.cms, nitrokit.eif, nitrokit.wire, nitrokit.wire.server
        import nitrokit.enclave.kms_client, nitrokit.enclave.service, nitrokit.enclave.nsm, nitrokit.parent.proxy
        from nitrokit.cli import build_parser
        build_parser()
    """))
    assert "nitrokit.enclave.cli" in loaded and "nitrokit.parent.cli" in loaded  # registered by entry point
    assert sorted(loaded.intersection(TEST_SUPPORT)) == []
    # Tunnel mode's parts load only for tunnel mode, not with relay mode or every --help.
    assert sorted(loaded.intersection(TUNNEL_ONLY)) == []


TUNNEL_ONLY = ("nitrokit.enclave.tunnel", "nitrokit.enclave._https", "nitrokit.enclave._sigv4",
               "nitrokit.parent.tunnel", "nitrokit.parent._allowlist", "nitrokit.parent._dns",
               "nitrokit.parent._credentials")


def test_the_pytest_plugin_imports_nothing_heavy_until_a_fixture_is_used() -> None:
    loaded = _loaded_after("import nitrokit.enclave.pytest_plugin")
    heavy = {"cryptography", "cbor2", "asn1crypto", "boto3", "botocore"}
    assert sorted(name for name in loaded if name.split(".")[0] in heavy or name in TEST_SUPPORT) == []


def test_lazy_names_resolve_and_unknown_names_raise_attribute_error() -> None:
    import nitrokit.enclave
    import nitrokit.kms

    assert nitrokit.enclave.KmsClient.__module__ == "nitrokit.enclave.kms_client"
    assert nitrokit.kms.SimulatedKms.__module__ == "nitrokit.kms.server"
    assert "KmsClient" in dir(nitrokit.enclave)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = nitrokit.enclave.Nope


def test_the_cli_and_the_pytest_plugin_are_registered_by_entry_point() -> None:
    commands = {entry.name: entry.value for entry in metadata.entry_points(group="nitrokit.commands")}
    assert commands == {"enclave": "nitrokit.enclave.cli:register", "parent": "nitrokit.parent.cli:register",
                        "demo": "nitrokit.enclave.demo:register"}
    plugins = {entry.name: entry.value for entry in metadata.entry_points(group="pytest11")}
    assert plugins.get("nitrokit") == "nitrokit.enclave.pytest_plugin"


# --- the wheel, and a venv with the core install only ---------------------------------------------------

@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # From a copy of what the sdist holds, so the build leaves nothing in the work tree; no build isolation:
    # the build tools (setuptools, wheel: the test extra) come from this venv, nothing is fetched.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("common", "enclave", "parent"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                             "-w", str(out), str(source)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return next(out.glob("nitrokit-*.whl"))


def test_the_wheel_has_exactly_one_top_level_import_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names}
    assert {entry for entry in top if not entry.endswith(".dist-info")} == {"nitrokit"}
    top_level = next(name for name in names if name.endswith(".dist-info/top_level.txt"))
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read(top_level).decode().split() == ["nitrokit"]
    for required in ("nitrokit/attestation/roots/aws-nitro-enclaves-root-g1.pem", "nitrokit/testing/pki/root.pem",
                     "nitrokit/enclave/nsm/_codec.py", "nitrokit/parent/proxy.py", "nitrokit/py.typed",
                     "nitrokit/enclave/ca/amazon-trust-services.pem", "nitrokit/testing/pki/tls-ca.pem"):
        assert required in names


CORE_DISTRIBUTIONS = ("cbor2", "cryptography", "asn1crypto", "cffi", "pycparser")


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A venv with nitrokit's wheel and its three core dependencies only (linked from this venv: no network)."""
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    for name in CORE_DISTRIBUTIONS:
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # cffi/pycparser are absent where cryptography needs no cffi
        origin = Path(str(distribution.locate_file("")))
        for top in sorted({Path(str(file)).parts[0] for file in distribution.files or []}):
            if top != ".." and not (site / top).exists():
                (site / top).symlink_to(origin / top)
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install",
                             "--no-deps", "--no-index", "--no-compile", str(wheel)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return venv


def _in(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run([str(venv / "bin/nitrokit"), *args], cwd=venv.parent, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_core_install_has_no_boto3(core_venv: Path) -> None:
    probe = subprocess.run([str(core_venv / "bin/python"), "-c", "import boto3"], capture_output=True, text=True,
                           timeout=60, check=False)
    assert probe.returncode != 0 and "No module named 'boto3'" in probe.stderr


def test_verify_and_every_enclave_command_run_in_the_core_install(core_venv: Path) -> None:
    version = _in(core_venv, "--version")
    assert version.returncode == 0 and version.stdout.startswith("nitrokit ")
    document = REPO / "fixtures/documents/example.cbor"
    verified = _in(core_venv, "verify", str(document), "--root", "fixture", "--at", "document", "--json")
    assert verified.returncode == 0, verified.stderr
    enclave_help = _in(core_venv, "enclave", "--help")
    assert enclave_help.returncode == 0, enclave_help.stderr
    for command in ("attest", "describe-pcr", "extend-pcr", "describe-nsm", "generate-random", "serve"):
        assert command in enclave_help.stdout
        assert _in(core_venv, "enclave", command, "--help").returncode == 0, command
    fresh = core_venv.parent / "fresh.cbor"
    attested = _in(core_venv, "enclave", "attest", "--nsm", "simulated", "--nonce", "01", "--out", str(fresh))
    assert attested.returncode == 0, attested.stderr
    checked = _in(core_venv, "verify", str(fresh), "--root", "fixture", "--nonce", "01")
    assert checked.returncode == 0, checked.stderr
    described = _in(core_venv, "enclave", "describe-pcr", "0", "--nsm", "simulated")
    assert described.returncode == 0, described.stderr


@pytest.mark.parametrize(("args", "extra"), [
    (["kms-sim"], "kms-sim"),
    (["parent", "--listen", "unix:///nonexistent/nitrokit-test.sock"], "parent"),
    (["demo"], "demo"),
])
def test_commands_that_need_an_extra_name_it(core_venv: Path, args: list[str], extra: str) -> None:
    result = _in(core_venv, *args)
    assert result.returncode == 2, result.stderr
    assert f"pip install 'nitrokit[{extra}]'" in result.stderr
    assert "Traceback" not in result.stderr


# --- beside a user's own common/, enclave/ and parent/ --------------------------------------------------

def test_a_user_project_with_common_enclave_and_parent_packages_runs_its_tests(tmp_path: Path) -> None:
    for name in OLD_NAMES:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"WHO = 'the user {name}'\n")
    (tmp_path / "common" / "kms.py").write_text("MINE = True\n")
    (tmp_path / "test_mine.py").write_text(textwrap.dedent("""
        import base64

        import common, enclave, parent
        from common.kms import MINE

        def test_my_packages_are_mine():
            assert (common.WHO, enclave.WHO, parent.WHO, MINE) == (
                "the user common", "the user enclave", "the user parent", True)

        def test_the_kms_sim_fixture_works(kms_client):
            assert len(kms_client.generate_random(NumberOfBytes=16)["Plaintext"]) == 16

        def test_the_simulated_nsm_fixture_works(simulated_nsm, fixture_root):
            from nitrokit.attestation import Policy, Verifier
            document = simulated_nsm.attestation(nonce=b"mine")
            Verifier(root=fixture_root).verify(document, policy=Policy(nonce=b"mine"))
    """))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "PYTEST"))}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout


def test_the_readme_layout_names_every_folder() -> None:
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout"):].split("\n## ", 1)[0]
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True,
                             timeout=60).stdout.split()
    top = {path.split("/")[0] for path in tracked if "/" in path}
    core = {path.split("/")[1] for path in tracked if path.startswith("common/") and path.count("/") >= 2}
    missing = sorted(f"{name}/" for name in top | core if f"`{name}/" not in layout)
    assert missing == []
