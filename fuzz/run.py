"""Run one fuzz target under atheris (libFuzzer), or minimise its corpus.

    python fuzz/run.py TARGET [--seconds N] [--runs N]     # fuzz; new inputs go to fuzz/corpus/TARGET/
    python fuzz/run.py TARGET --scratch DIR --runs 2000    # the committed corpus read-only, new inputs to DIR
    python fuzz/run.py TARGET --merge                      # keep the seeds and the files that add coverage
    python fuzz/run.py TARGET --replay FILE...             # run inputs through the harness, print tracebacks
    python fuzz/run.py --list

Crashes (any exception other than nitrokit's typed errors, a hang over ``--timeout`` seconds, memory over
``--rss-limit-mb``) are written to fuzz/crashes/TARGET/ (to DIR with ``--scratch``) and end the run with a
non-zero status. Our packages (and asn1crypto, which the CMS parser drives) are instrumented for coverage.
Any further argument is passed to libFuzzer as is (``-seed=1``, ``-jobs=2``, ``-dict=FILE``...).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
CRASHES = ROOT / "fuzz" / "crashes"
#: instrumented for coverage feedback (imported inside atheris.instrument_imports): ours, asn1crypto (the CMS
#: parser runs on it) and the standard library's HTTP parsing (the simulated KMS's request handler runs on it)
INSTRUMENTED = ("nitrokit", "fuzz", "asn1crypto", "http.server", "http.client", "email")
#: libFuzzer's -max_len per target: a little above the largest sensible input, so time goes to useful sizes.
MAX_LEN = {
    "attestation_parse": 12288, "attestation_verify": 12288, "attestation_signed": 8192,
    "cms_parse": 8192, "cms_decrypt": 8192,
    "wire_request": 4096, "wire_response": 4096, "wire_stream": 4096,
    "kms_request": 2048, "kms_http": 4096,
    "tunnel_allowlist": 2048, "tunnel_dns": 1024, "tunnel_http": 4096,
}
#: libFuzzer dictionaries (fuzz/dicts/NAME.dict): tokens the mutator splices in, for the text formats.
DICTS = {"wire_request": "json", "wire_response": "json", "wire_stream": "json", "kms_request": "kms",
         "kms_http": "http", "tunnel_allowlist": "allowlist", "tunnel_http": "http"}
# libFuzzer re-executes this script for -merge (and -fork/-jobs): the target then comes from the environment.
_TARGET_ENV = "NITROKIT_FUZZ_TARGET"


def _self_command() -> str:
    """argv[0] for libFuzzer: it joins its arguments with spaces and runs them through the shell."""
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).resolve()))}"


def _fuzz(target: str, libfuzzer_argv: list[str]) -> None:
    import atheris

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    with atheris.instrument_imports(include=list(INSTRUMENTED)):
        from fuzz import harnesses
    test_one_input = harnesses.TARGETS[target]
    os.environ[_TARGET_ENV] = target
    atheris.Setup(libfuzzer_argv, test_one_input)
    atheris.Fuzz()  # exits the process


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    inherited = os.environ.get(_TARGET_ENV)
    if inherited in MAX_LEN and (not argv or argv[0] not in MAX_LEN) and "--list" not in argv:
        _fuzz(inherited, [_self_command(), *argv])  # started by libFuzzer itself: its own arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("target", nargs="?", choices=sorted(MAX_LEN))
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--seconds", type=int, help="stop after N seconds (-max_total_time)")
    parser.add_argument("--runs", type=int, help="stop after N executions (-runs)")
    parser.add_argument("--timeout", type=int, default=10, help="an input taking longer is a hang (default 10 s)")
    parser.add_argument("--rss-limit-mb", type=int, default=2048, help="memory limit (default 2048 MB)")
    parser.add_argument("--scratch", type=Path, help="write new inputs and crashes here; the corpus stays as is")
    parser.add_argument("--merge", action="store_true", help="minimise fuzz/corpus/TARGET (keeps seed-* files)")
    parser.add_argument("--replay", nargs="+", type=Path, metavar="FILE",
                        help="run these inputs through the harness (no atheris needed) and report each")
    args, extra = parser.parse_known_args(argv)
    if args.list:
        print("\n".join(MAX_LEN))
        return 0
    if args.target is None:
        parser.error("a target is required (see --list)")
    target: str = args.target
    if args.replay:
        return _replay(target, args.replay)
    corpus = CORPUS / target
    corpus.mkdir(parents=True, exist_ok=True)
    options = [f"-max_len={MAX_LEN[target]}", f"-timeout={args.timeout}", f"-rss_limit_mb={args.rss_limit_mb}",
               "-print_final_stats=1", "-report_slow_units=100000"]
    if target in DICTS:
        options.append(f"-dict={ROOT / 'fuzz' / 'dicts' / DICTS[target]}.dict")
    if args.seconds is not None:
        options.append(f"-max_total_time={args.seconds}")
    if args.runs is not None:
        options.append(f"-runs={args.runs}")

    if args.merge:
        return _merge(target, corpus, options, extra)
    if args.scratch is not None:
        args.scratch.mkdir(parents=True, exist_ok=True)
        artifacts, dirs = args.scratch, [str(args.scratch), str(corpus)]
    else:
        artifacts, dirs = CRASHES / target, [str(corpus)]
        artifacts.mkdir(parents=True, exist_ok=True)
    _fuzz(target, [_self_command(), *options, f"-artifact_prefix={artifacts}/", *extra, *dirs])
    return 0  # not reached: atheris.Fuzz() exits


def _replay(target: str, files: list[Path]) -> int:
    """Each file through the harness, uninstrumented: "ok", or the traceback of what escaped."""
    import traceback

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from fuzz import harnesses

    failed = 0
    for path in files:
        try:
            harnesses.TARGETS[target](path.read_bytes())
        except Exception:  # the point: show whatever escaped the harness
            failed += 1
            print(f"{path}: FAILED", file=sys.stderr)
            traceback.print_exc()
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


def _corpus_filter(target: str) -> Callable[[bytes], bool] | None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from fuzz import harnesses

    return harnesses.CORPUS_FILTERS.get(target)


def _merge(target: str, corpus: Path, options: list[str], extra: list[str]) -> int:
    """Keep the seeds, and of the other files only those that reach code the seeds do not.

    libFuzzer merges into a folder that starts with the seeds: a file is kept if it adds coverage to what is
    already there. Coverage here means edges only (``-use_counters=0``, unless another value is given), not
    hit counts: that keeps the committed corpora small, and longer runs grow them back. Targets with a filter
    in ``harnesses.CORPUS_FILTERS`` also drop what it refuses. libFuzzer runs the merge in child processes
    (this script again), so a crash while merging loses nothing.
    """
    import subprocess

    before = sorted(corpus.iterdir())
    seeds = [path for path in before if path.name.startswith("seed-")]
    with tempfile.TemporaryDirectory(prefix=f"fuzz-merge-{target}-") as scratch:
        merged = Path(scratch) / "merged"
        merged.mkdir()
        for path in seeds:
            shutil.copy2(path, merged / path.name)
        env = {**os.environ, _TARGET_ENV: target}
        counters = [] if any(arg.startswith("-use_counters=") for arg in extra) else ["-use_counters=0"]
        # The child is this script again: it hands these libFuzzer arguments straight to atheris.
        command = [sys.executable, str(Path(__file__).resolve()), *options, "-merge=1", *counters,
                   f"-artifact_prefix={scratch}/", *extra, str(merged), str(corpus)]
        result = subprocess.run(command, env=env, check=False)  # noqa: S603
        if result.returncode != 0:
            print(f"merge failed with status {result.returncode}; {corpus} left as it was", file=sys.stderr)
            return result.returncode
        kept = {path.name for path in merged.iterdir()}
        keep = _corpus_filter(target)
        if keep is not None:
            kept = {name for name in kept if name.startswith("seed-") or keep((merged / name).read_bytes())}
        for path in before:
            if path.name not in kept and not path.name.startswith("seed-"):
                path.unlink()
        for path in merged.iterdir():
            if path.name in kept and not (corpus / path.name).exists():
                shutil.copy2(path, corpus / path.name)
    after = sorted(corpus.iterdir())
    size = sum(path.stat().st_size for path in after)
    print(f"{target}: {len(before)} -> {len(after)} files ({len(seeds)} seeds), {size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
