"""Dockerfile.enclave: the reproducibility rules, checked by parsing it, and its install steps, really run.

There is no Docker engine here, so the image is never built. Instead the Dockerfile is parsed and checked
rule by rule, and its COPY/ENV/RUN steps are replayed in a scratch directory (``/opt/nitrokit`` and ``/src``
mapped into tmp_path): a fresh venv gets the hash-locked dependencies and nitrokit from a copy of the tree,
then the CMD's program runs with ``--help``. Running ``enclave serve`` itself is left to the enclave tests.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile.enclave"
LOCK = REPO / "requirements" / "enclave.lock"
DOCS = REPO / "docs" / "enclave-images.md"
VENV = "/opt/nitrokit"
CMD_PROGRAM = f"{VENV}/bin/nitrokit"
_DIGEST_RE = re.compile(r"^[\w./:-]+@sha256:[0-9a-f]{64}$")


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


def parse(text: str) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped (enough for this Dockerfile)."""
    instructions: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text())


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    out: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            out.append([])
        assert out, f"line {instruction.line}: {instruction.keyword} before the first FROM"
        out[-1].append(instruction)
    return out


def env_of(stage: list[Instruction]) -> dict[str, str]:
    """ARG defaults and ENV values of one stage, with ${VAR} expanded."""
    values: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword not in {"ARG", "ENV"}:
            continue
        for item in shlex.split(instruction.args):
            name, sep, value = item.partition("=")
            assert sep, f"line {instruction.line}: {instruction.keyword} {item!r} has no value (use NAME=value)"
            values[name] = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], value)
    return values


def pip_installs(instructions: list[Instruction]) -> list[list[str]]:
    commands = []
    for instruction in instructions:
        if instruction.keyword != "RUN":
            continue
        for part in re.split(r"&&|;", instruction.args):
            words = shlex.split(part)
            if "pip" in words and "install" in words:
                commands.append(words)
    assert commands, "no pip install in the Dockerfile"
    return commands


# --- rules checked by parsing ------------------------------------------------------------------------------

def test_base_images_are_pinned_by_the_same_digest(instructions):
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 1
    images = set()
    for instruction in froms:
        words = instruction.args.split()
        assert not any(w.startswith("--platform") for w in words), "a --platform pin belongs in the digest"
        assert _DIGEST_RE.match(words[0]), f"line {instruction.line}: FROM {words[0]} is not pinned by digest"
        images.add(words[0])
    assert len(images) == 1, f"stages use different base images: {images}"


def test_copy_from_names_only_earlier_stages(instructions):
    names: set[str] = set()
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            if len(words) == 3 and words[1].upper() == "AS":
                names.add(words[2])
        if instruction.keyword == "COPY":
            for flag in re.findall(r"--from=(\S+)", instruction.args):
                assert flag in names, f"line {instruction.line}: COPY --from={flag} would fetch an image"


def test_no_network_tools_and_no_add(instructions):
    forbidden = re.compile(r"\b(curl|wget|apt-get|apt|apk|yum|dnf|git|ssh|scp|nc|ftp|pip3? download)\b")
    for instruction in instructions:
        assert instruction.keyword != "ADD", f"line {instruction.line}: ADD can fetch URLs; use COPY"
        if instruction.keyword in {"RUN", "CMD", "ENTRYPOINT"}:
            found = forbidden.search(instruction.args)
            assert found is None, f"line {instruction.line}: {found.group(0) if found else ''} in {instruction.keyword}"
        assert "http://" not in instruction.args and "https://" not in instruction.args


def test_source_date_epoch_and_no_bytecode_in_every_stage(instructions):
    for stage in stages(instructions):
        env = env_of(stage)
        assert env.get("SOURCE_DATE_EPOCH", "").isdigit(), f"stage at line {stage[0].line}: SOURCE_DATE_EPOCH"
        assert int(env["SOURCE_DATE_EPOCH"]) >= 315532800, "zip timestamps start in 1980"
        assert env.get("PYTHONDONTWRITEBYTECODE") == "1", f"stage at line {stage[0].line}: PYTHONDONTWRITEBYTECODE"
        declared = [i for i in stage if i.keyword == "ENV" and "SOURCE_DATE_EPOCH=" in i.args]
        assert declared, f"stage at line {stage[0].line}: SOURCE_DATE_EPOCH must be an ENV, not only an ARG"


def test_every_pip_install_is_locked_or_local(instructions):
    for words in pip_installs(instructions):
        assert "--no-compile" in words, f"{words}: pip would write timestamped .pyc files"
        assert "--no-deps" in words, f"{words}: pip would resolve dependencies itself"
        if "-r" in words:
            assert "--require-hashes" in words and "--only-binary=:all:" in words, words
            lock = words[words.index("-r") + 1]
            assert lock == "/src/requirements/enclave.lock"
            assert not any(w.startswith(("--index-url", "--extra-index-url", "--find-links")) for w in words)
        else:
            # The only other install is nitrokit from the copied tree, with no index to fetch anything from.
            assert "--no-index" in words and "--no-build-isolation" in words, words
            assert words[-1] == "/src", words
        assert not any(w.startswith(("-e", "--editable", "--upgrade", "-U", "--pre")) for w in words), words


def test_cmd_is_exec_form_with_an_absolute_path(instructions):
    final = stages(instructions)[-1]
    cmds = [i for i in final if i.keyword == "CMD"]
    assert len(cmds) == 1, "exactly one CMD in the final stage"
    command = json.loads(cmds[0].args)
    assert isinstance(command, list) and all(isinstance(w, str) for w in command), "CMD must be a JSON array"
    assert command[0] == CMD_PROGRAM and Path(command[0]).is_absolute()
    assert command[1:3] == ["enclave", "serve"]
    assert "--nsm" in command and command[command.index("--nsm") + 1] == "device"
    assert not [i for i in instructions if i.keyword == "ENTRYPOINT"], "nitro-cli runs CMD; no ENTRYPOINT"
    # The final stage carries the venv only: no sources, no build tools copied in.
    copies = [i.args for i in final if i.keyword == "COPY"]
    assert copies == [f"--from=build {VENV} {VENV}"]


def test_copy_sources_exist_and_stay_inside_the_tree(instructions):
    for instruction in instructions:
        if instruction.keyword != "COPY" or instruction.args.startswith("--from="):
            continue
        *sources, _ = instruction.args.split()
        for source in sources:
            path = (REPO / source).resolve()
            assert path.is_relative_to(REPO), source
            assert path.exists(), f"line {instruction.line}: COPY {source}: not in the repository"


# --- the lock file -----------------------------------------------------------------------------------------

def lock_entries() -> dict[str, tuple[str, list[str]]]:
    text = LOCK.read_text()
    entries: dict[str, tuple[str, list[str]]] = {}
    logical = re.sub(r"\\\n", " ", text)
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("-"), f"option line in the lock: {line}"
        requirement, *options = line.split()
        name, sep, version = requirement.partition("==")
        assert sep and version, f"{requirement} is not pinned with =="
        assert "://" not in requirement and "@" not in requirement, requirement
        hashes = [o.removeprefix("--hash=sha256:") for o in options]
        assert all(o.startswith("--hash=sha256:") for o in options), options
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{name}: hashes"
        entries[str(canonicalize_name(name))] = (version, hashes)
    return entries


def test_lock_entries_are_pinned_and_hashed():
    entries = lock_entries()
    assert len(entries) >= 5


def test_lock_covers_pyproject_dependencies_and_build_requirements():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    entries = lock_entries()
    required = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    for text in required:
        requirement = Requirement(text)
        name = str(canonicalize_name(requirement.name))
        assert name in entries, f"{name} is missing from {LOCK.name}: regenerate it"
        version = entries[name][0]
        assert requirement.specifier.contains(version, prereleases=True), f"{name}=={version} not {requirement}"


def test_lock_names_its_regenerate_command_and_the_docs_repeat_it():
    header = LOCK.read_text().split("\n\n")[0]
    match = re.search(r"^#\s+(pip-compile .*)$", LOCK.read_text(), re.MULTILINE)
    assert match, "the lock must say how it was generated"
    command = match.group(1)
    for flag in ("--generate-hashes", "--all-build-deps", "--allow-unsafe", "pyproject.toml",
                 "--output-file=requirements/enclave.lock"):
        assert flag in command, flag
    assert "Python 3.11" in header
    assert command in DOCS.read_text(), "docs/enclave-images.md must show the lock's regenerate command"


# --- the install steps, really run ------------------------------------------------------------------------

_NETWORK_ERRORS = ("NewConnectionError", "Temporary failure in name resolution", "Max retries exceeded",
                   "Network is unreachable", "No matching distribution found", "Could not fetch URL")


def _map_paths(text: str, root: Path) -> str:
    """Point the image's absolute paths at the scratch directory."""
    return re.sub(r"(?<![\w/.-])/(opt/nitrokit|src)(?=[/\s'\"]|$)", lambda m: f"{root}/{m.group(1)}", text)


def _copy(args: str, root: Path) -> None:
    *sources, dest = args.split()
    target = Path(_map_paths(dest, root))
    for source in sources:
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
        elif dest.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target / origin.name)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    # The image's "python" is the base interpreter; here, the one running the tests (its pip supports --python).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory, instructions) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("image")
    final_env: dict[str, str] = {}
    for stage in stages(instructions):
        env = env_of(stage)
        final_env = env
        for instruction in stage:
            if instruction.keyword == "COPY":
                if instruction.args.startswith("--from="):
                    _, source, dest = instruction.args.split()
                    assert source == dest, "the venv must keep its path (its scripts name their interpreter)"
                    continue
                _copy(instruction.args, root)
            elif instruction.keyword == "RUN":
                command = _map_paths(instruction.args, root)
                result = subprocess.run(["sh", "-c", command], cwd=root, env=_clean_env(env), capture_output=True,
                                        text=True, timeout=540, check=False)
                output = result.stdout + result.stderr
                if result.returncode != 0 and any(marker in output for marker in _NETWORK_ERRORS):
                    pytest.skip(f"the package registry is unreachable, cannot replay the install: {output[-300:]}")
                assert result.returncode == 0, f"RUN at line {instruction.line} failed:\n{output[-3000:]}"
    return root, final_env


def test_install_steps_and_cmd_run_in_a_scratch_venv(installed, instructions):
    root, env = installed
    final = stages(instructions)[-1]
    command = json.loads(next(i.args for i in final if i.keyword == "CMD"))
    program = Path(_map_paths(command[0], root))
    assert program.is_file() and os.access(program, os.X_OK)
    assert program.read_text().startswith(f"#!{root}/opt/nitrokit/bin/python")
    result = subprocess.run([str(program), "--help"], cwd=root, env=_clean_env(env), capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "nitrokit" in result.stdout and "enclave" in result.stdout
    # The CMD's command group is installed; once its sub-command exists, its --help must run too.
    group = subprocess.run([str(program), command[1], "--help"], cwd=root, env=_clean_env(env), capture_output=True,
                           text=True, timeout=120, check=False)
    assert group.returncode == 0, group.stderr
    if command[2] in group.stdout:
        sub = subprocess.run([str(program), *command[1:3], "--help"], cwd=root, env=_clean_env(env),
                             capture_output=True, text=True, timeout=120, check=False)
        assert sub.returncode == 0, sub.stderr
    # The installed copy is what ran (not the repository on sys.path), and it wrote no bytecode.
    probe = subprocess.run([str(root / "opt/nitrokit/bin/python"), "-c", "import nitrokit; print(nitrokit.__file__)"],
                           cwd=root, env=_clean_env(env), capture_output=True, text=True, timeout=60, check=False)
    assert probe.stdout.strip().startswith(str(root / "opt/nitrokit/lib")), probe.stdout + probe.stderr
    assert not list((root / "opt/nitrokit").rglob("*.pyc"))


def _site_packages(root: Path) -> Path:
    return next((root / "opt/nitrokit/lib").glob("python3.*/site-packages"))


def test_the_image_carries_no_boto3_and_no_private_key(installed):
    root, env = installed
    site = _site_packages(root)
    for name in ("boto3", "botocore", "s3transfer", "jmespath"):
        assert not (site / name).exists(), f"{name} is in the enclave image"
    keys = [path for path in (root / "opt/nitrokit").rglob("*.pem") if b"PRIVATE KEY" in path.read_bytes()]
    assert keys == []
    assert (site / "nitrokit/testing/pki/root.pem").is_file()  # the public fixture root stays (kms-sim, verify)
    assert not (site / "nitrokit/testing/pki/tls-ca.pem").exists()  # its key is public: nothing may trust it
    assert (site / "nitrokit/enclave/ca/amazon-trust-services.pem").is_file()  # what tunnel mode trusts
    # Every enclave command group loads without boto3, and the simulated NSM says why it cannot sign.
    program = str(root / "opt/nitrokit/bin/nitrokit")
    attest = subprocess.run([program, "enclave", "attest", "--nsm", "simulated"], cwd=root, env=_clean_env(env),
                            capture_output=True, text=True, timeout=120, check=False)
    assert attest.returncode == 2, attest.stderr
    assert "TEST keys are not installed" in attest.stderr and "Traceback" not in attest.stderr


def test_scratch_venv_has_exactly_the_locked_versions(installed):
    root, env = installed
    script = "import importlib.metadata as m; print('\\n'.join(f'{d.name}=={d.version}' for d in m.distributions()))"
    result = subprocess.run([str(root / "opt/nitrokit/bin/python"), "-c", script], cwd=root, env=_clean_env(env),
                            capture_output=True, text=True, timeout=60, check=True)
    installed_versions = {str(canonicalize_name(n)): v for n, _, v in
                          (line.partition("==") for line in result.stdout.split())}
    expected = {name: version for name, (version, _) in lock_entries().items()}
    import nitrokit
    assert installed_versions.pop("nitrokit") == nitrokit.__version__
    assert installed_versions == expected


def test_pip_refuses_a_lock_whose_hash_does_not_match(tmp_path, instructions):
    """The Dockerfile's locked install, pointed at a lock with one wrong hash, must fail (and install nothing)."""
    words = next(w for w in pip_installs(instructions) if "-r" in w)
    version, hashes = lock_entries()["asn1crypto"]
    bad_lock = tmp_path / "bad.lock"
    bad_lock.write_text(f"asn1crypto=={version} --hash=sha256:{'0' * 64}\n")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    args = list(words[words.index("install") + 1 :])
    args[args.index("-r") + 1] = str(bad_lock)
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", *args],
                            env=_clean_env({"PIP_DISABLE_PIP_VERSION_CHECK": "1"}), capture_output=True, text=True,
                            timeout=300, check=False)
    output = result.stdout + result.stderr
    if result.returncode != 0 and any(marker in output for marker in _NETWORK_ERRORS):
        pytest.skip(f"the package registry is unreachable: {output[-300:]}")
    assert result.returncode != 0
    assert "DO NOT MATCH THE HASHES" in output
    # pip names the hash it got: that of the real file, which the true lock lists.
    assert any(h in output for h in hashes)
    assert not list(venv.rglob("asn1crypto"))


def _cmd_for_the_simulated_stack(command: list[str], *, listen: str, parent: str) -> list[str]:
    """The image's CMD with its vsock addresses and the real NSM swapped for local stand-ins."""
    swapped = list(command)
    for option, value in (("--listen", listen), ("--parent", parent), ("--nsm", "simulated")):
        assert option in swapped, f"the CMD lacks {option}"
        swapped[swapped.index(option) + 1] = value
    return swapped


def test_the_cmd_serves_attestation_against_the_simulated_stack(installed, instructions, tmp_path, request):
    from nitrokit.attestation import Policy, Verifier
    from nitrokit.kms import SimulatedKms
    from nitrokit.testing import fixture_pki
    from nitrokit.testing.processes import NitrokitProcess, simulator_environment
    from nitrokit.wire.client import WireClient
    from nitrokit.wire.service import SERVICE_OPERATIONS, attest_request, parse_attest_response

    root, env = installed
    command = json.loads(next(i.args for i in stages(instructions)[-1] if i.keyword == "CMD"))
    # The image has no /dev/nsm here and no TEST keys: lend the simulated NSM the fixture keys for this run only.
    pki = _site_packages(root) / "nitrokit/testing/pki"
    lent = [Path(shutil.copy2(key, pki / key.name)) for key in (REPO / "common/testing/pki").glob("*.key.pem")]

    def take_back() -> None:
        for key in lent:
            key.unlink()

    request.addfinalizer(take_back)
    with SimulatedKms() as kms, NitrokitProcess("parent", "--listen", f"unix://{tmp_path / 'parent.sock'}",
                                                "--endpoint-url", kms.url, "--region", "us-east-1",
                                                env=simulator_environment()) as parent:
        argv = _cmd_for_the_simulated_stack(command, listen=f"unix://{tmp_path / 'service.sock'}",
                                            parent=parent.first_line)
        argv[0] = _map_paths(argv[0], root)
        service = subprocess.Popen(argv, cwd=root, env=_clean_env(env), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            assert service.stdout is not None
            address = service.stdout.readline().strip()
            assert address.startswith("unix://"), service.stderr.read() if service.stderr else ""
            with WireClient(address, operations=SERVICE_OPERATIONS) as client:
                document = parse_attest_response(client.call("Attest", attest_request(b"from the image")))
            Verifier(root=fixture_pki().root).verify(document, policy=Policy(nonce=b"from the image"))
        finally:
            service.terminate()
            assert service.wait(30) == 0
