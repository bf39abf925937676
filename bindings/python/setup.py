"""Build hook: compile the Herald core with cargo and put its shared library in the package.

`pip install ./bindings/python` builds in-tree, so the root crate is at ../../Cargo.toml.
Environment knobs:
  CARGO               cargo executable (default: `cargo` on PATH)
  HERALD_CARGO_PROFILE  cargo profile (default: release)
  CARGO_TARGET_DIR    honoured by cargo as usual (the artifact path is read from cargo's output)
  HERALD_PREBUILT_LIBRARY  path of an already built (e.g. stripped) libherald: bundled as is,
                      cargo is not run (bindings/dist.sh uses it)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:  # setuptools >= 70.1 ships bdist_wheel itself
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # pragma: no cover - older setuptools
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
MANIFEST = HERE.parent.parent / "Cargo.toml"


def _library_name() -> str:
    if sys.platform == "win32":
        return "herald.dll"
    if sys.platform == "darwin":
        return "libherald.dylib"
    return "libherald.so"


def progress(message: str) -> None:
    """Tell the user what the build is doing. pip captures a build's output (shown only
    with `pip install -v`), so the message also goes to the terminal when there is one."""
    line = f"herald: {message}"
    print(line, file=sys.stderr, flush=True)
    if not sys.stderr.isatty():
        try:
            with open("/dev/tty", "w") as tty:
                tty.write(line + "\n")
        except OSError:
            pass


def build_core() -> Path:
    """Run `cargo build` for the root crate and return the path of the cdylib."""
    prebuilt = os.environ.get("HERALD_PREBUILT_LIBRARY")
    if prebuilt:
        if not Path(prebuilt).is_file():
            raise SystemExit(f"herald: HERALD_PREBUILT_LIBRARY={prebuilt} is not a file")
        progress(f"bundling the prebuilt core {prebuilt} (cargo not run)")
        return Path(prebuilt)
    if not MANIFEST.is_file():
        raise SystemExit(
            f"herald: cannot find the core crate at {MANIFEST}. Build from a source checkout "
            "(pip install ./bindings/python), which builds in-tree."
        )
    cargo = os.environ.get("CARGO", "cargo")
    if shutil.which(cargo) is None:
        raise SystemExit("herald: `cargo` not found on PATH; install Rust (https://rustup.rs) to build the core")
    profile = os.environ.get("HERALD_CARGO_PROFILE", "release")
    cmd = [
        cargo, "build", "--manifest-path", str(MANIFEST), "-p", "herald", "--lib",
        "--profile", profile, "--message-format=json-render-diagnostics",
    ]
    progress(
        "compiling the Rust core from source; this usually takes 2 to 3 minutes on 2 cores, "
        "more when they are busy (`pip install -v` shows cargo's progress; a prebuilt wheel "
        "needs no compiler)"
    )
    print("herald: " + " ".join(cmd), file=sys.stderr, flush=True)
    started = time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, check=False, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"herald: cargo build failed with exit code {proc.returncode}")
    progress(f"core compiled in {time.monotonic() - started:.0f} s")
    wanted = _library_name()
    found = None
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") != "compiler-artifact" or "cdylib" not in msg.get("target", {}).get("kind", []):
            continue
        if msg["target"].get("name") != "herald":
            continue
        for filename in msg.get("filenames", []):
            if Path(filename).name == wanted:
                found = Path(filename)
    if found is None or not found.is_file():
        raise SystemExit(f"herald: cargo did not report a {wanted} artifact for the herald crate")
    return found


class BuildPyWithCore(build_py):
    def run(self) -> None:
        super().run()
        library = build_core()
        dest = Path(self.build_lib) / "herald" / library.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(library, dest)
        print(f"herald: bundled {library} -> {dest}", file=sys.stderr, flush=True)


class BinaryDistribution(Distribution):
    """The wheel contains a native library: it is platform-specific."""

    def has_ext_modules(self) -> bool:
        return True


class BdistWheelPy3(bdist_wheel):
    """The library is loaded with ctypes and does not link libpython: tag py3-none-<platform>."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):  # type: ignore[no-untyped-def]
        _python, _abi, plat = super().get_tag()
        return "py3", "none", plat


setup(
    distclass=BinaryDistribution,
    cmdclass={"build_py": BuildPyWithCore, "bdist_wheel": BdistWheelPy3},
)
