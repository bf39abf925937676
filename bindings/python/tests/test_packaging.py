"""The installed package ships the core library; HERALD_LIBRARY overrides it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Dict

import herald
from herald import _ffi

PROBE = "import herald, sys; print(herald.library_path()); print(herald.core_version())"


def env_without_override(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HERALD_LIBRARY"}
    env.update(extra)
    return env


def test_library_in_use() -> None:
    path = Path(herald.library_path())
    assert path.is_file()
    override = os.environ.get("HERALD_LIBRARY")
    if override:
        assert path == Path(override).resolve()
    else:
        # Tests run against the installed package: the library must be inside it.
        assert path.parent == Path(herald.__file__).resolve().parent, path
        assert path.name == _ffi.library_file_name()


def test_package_is_typed() -> None:
    assert resources.files("herald").joinpath("py.typed").is_file()


def test_core_version() -> None:
    version = herald.core_version()
    assert isinstance(version, str) and version


def test_herald_library_override(tmp_path: Path) -> None:
    copy = tmp_path / "custom" / _ffi.library_file_name()
    copy.parent.mkdir()
    shutil.copyfile(herald.library_path(), copy)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE + "; herald.Server(port=0).close()"],
        env=env_without_override(HERALD_LIBRARY=str(copy)),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == str(copy.resolve())


def test_bad_herald_library_raises_a_clear_error(tmp_path: Path) -> None:
    not_a_library = tmp_path / "libherald.so"
    not_a_library.write_text("definitely not ELF")
    script = (
        "import herald\n"
        "for path in [{!r}, {!r}]:\n"
        "    import os; os.environ['HERALD_LIBRARY'] = path\n"
        "    herald._ffi._lib = None\n"
        "    try:\n"
        "        herald.Server(port=0)\n"
        "    except herald.HeraldLibraryError as exc:\n"
        "        assert isinstance(exc, ImportError)\n"
        "        print('error:', exc)\n"
    ).format(str(tmp_path / "missing.so"), str(not_a_library))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env_without_override(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout
    assert "missing.so" in lines[0] and "libherald.so" in lines[1]


def test_import_does_not_need_the_library(tmp_path: Path) -> None:
    # `import herald` works even when the library is unusable; the error comes at first use.
    proc = subprocess.run(
        [sys.executable, "-c", "import herald; print(herald.Server.__doc__ is not None)"],
        env=env_without_override(HERALD_LIBRARY=str(tmp_path / "nope.so")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"


def test_wheel_metadata_is_platform_specific() -> None:
    from importlib import metadata

    dist = metadata.distribution("herald")
    files = [str(f) for f in dist.files or []]
    assert any(f.endswith(_ffi.library_file_name()) for f in files), files
    wheel = dist.read_text("WHEEL") or ""
    assert "Root-Is-Purelib: false" in wheel
    assert "Tag: py3-none-" in wheel, wheel
