"""Where and with what a result was computed (plain data, no I/O)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from importlib import metadata


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> dict[str, object]:
    """Return library versions, Python, CPU and the current UTC time.

    Returns
    -------
    dict
        JSON-serialisable mapping with keys ``bnproof``, ``python``,
        ``sympy``, ``numpy``, ``numba``, ``scipy``, ``torch`` (``None`` when
        not installed), ``platform``, ``cpu``, ``cpu_count`` and ``date``.
    """
    return {
        "bnproof": _version("bnproof"),
        "python": sys.version.split()[0],
        "sympy": _version("sympy"),
        "numpy": _version("numpy"),
        "numba": _version("numba"),
        "scipy": _version("scipy"),
        "torch": _version("torch"),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
