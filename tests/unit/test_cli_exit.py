"""How the ``dataferry`` process starts and ends: what its start-up imports, and the fast exit
that skips tearing the interpreter down without skipping what exit must do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataferry.cli import exit_code

DATAFERRY = str(Path(sys.executable).with_name("dataferry"))


def _python(code: str) -> subprocess.CompletedProcess[str]:
    # Buffered output, as in production: PYTHONUNBUFFERED would hide a missing flush.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)


def test_starting_the_cli_leaves_what_most_commands_never_use_unimported() -> None:
    """Each of these costs every command start-up time; they load when a command needs them."""
    optional = ["rich", "boto3", "psycopg", "pymysql", "dataferry.sanitise", "dataferry.jobs"]
    out = _python(f"import sys, dataferry.cli; print([m for m in {optional!r} if m in sys.modules])")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("code", "expected"), [(None, 0), (0, 0), (3, 3), ("a message", 1)])
def test_exit_code_reads_system_exit_like_the_interpreter(
    code: int | str | None, expected: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(SystemExit(code)) == expected
    assert capsys.readouterr().err == ("a message\n" if isinstance(code, str) else "")


def test_fast_exit_runs_atexit_handlers_and_flushes_output() -> None:
    out = _python(
        "import atexit, sys\n"
        "from dataferry.cli import exit_now\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "sys.stdout.write('unflushed ')\n"
        "sys.stderr.write('to stderr')\n"
        "exit_now(4)\n"
    )
    assert (out.returncode, out.stdout, out.stderr) == (4, "unflushed atexit ran\n", "to stderr")


def test_fast_exit_waits_for_a_thread_still_working() -> None:
    """A non-daemon thread would be waited for by a normal exit: it must not be cut short."""
    out = _python(
        "import threading, time\n"
        "from dataferry.cli import exit_now\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()\n"
        "exit_now(5)\n"
    )
    assert (out.returncode, out.stdout) == (5, "thread done\n")


def test_the_command_prints_all_its_output_into_a_pipe_and_keeps_its_exit_code() -> None:
    shown = subprocess.run([DATAFERRY, "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0
    assert shown.stdout.startswith("Usage: dataferry") and "quickstart" in shown.stdout
    wrong = subprocess.run([DATAFERRY, "no-such-command"], capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "No such command" in wrong.stderr


def test_sigterm_stops_a_command_like_ctrl_c() -> None:
    """The ``dataferry`` entry point turns SIGTERM into ``KeyboardInterrupt``: cleanup code runs."""
    code = (
        "import os, signal, time; from dataferry.cli import stop_on_sigterm\n"
        "stop_on_sigterm()\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)\n"
        "except KeyboardInterrupt as exc:\n"
        "    print('cleaned up after', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "cleaned up after stopped by SIGTERM", out.stderr
