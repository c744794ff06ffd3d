"""A run that is SIGKILLed while it holds a private directory (``dataferry.private``): what it left."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

_CODE = (
    "import sys, time; from pathlib import Path; from dataferry import private\n"
    "with private.private_dir(Path(sys.argv[1])) as d:\n"
    "    (d / sys.argv[2]).write_bytes(sys.argv[3].encode())\n"
    "    print(d, flush=True); time.sleep(60)\n"
)


def killed_run_left(base: Path, name: str, content: str) -> Path:
    """A real process makes a private directory under ``base``, writes ``name`` into it and is
    SIGKILLed; returns the directory it left."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CODE, str(base), name, content], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    left = Path(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert (left / name).exists()
    return left
