"""What the figures were measured on: the machine and the versions of everything involved."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from contextlib import suppress
from pathlib import Path

from bench.peers import find_program
from meshlet.agent.build import data_path_build


def _cpu_model() -> str:
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return (done.stdout + done.stderr).strip()


def _first_match(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    return found.group(1) if found else "unknown"


def machine() -> dict[str, str | int]:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "os": _first_match(r'PRETTY_NAME="([^"]+)"', _read("/etc/os-release")),
    }


def _read(path: str) -> str:
    with suppress(OSError):
        return Path(path).read_text()
    return ""


def versions(repo: Path) -> dict[str, str]:
    rev = _output(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"]) or "unknown"
    if _output(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "src"]):
        rev += " (src modified)"
    return {
        "python": platform.python_version(),
        "haproxy": _first_match(r"HAProxy version (\S+)", _output([find_program("haproxy"), "-v"])),
        "nginx": _first_match(r"nginx/(\S+)", _output([find_program("nginx"), "-v"])),
        "wrk": _first_match(r"wrk (\S+)", _output([find_program("wrk"), "-v"])),
        "meshlet": rev,
        # The agents inherit this process's PYTHONPATH, so they load the same build.
        "meshlet_build": data_path_build(),
    }
