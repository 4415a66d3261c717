"""Wall, CPU and peak RSS of one command, measured from outside, for the benches' subprocess cases.

The command is forked from a small launcher (``python -S``) and reaped with ``wait4``: its
``ru_maxrss`` is then the command's own peak (a child forked straight from the bench process
would carry the bench's resident set across ``exec``), and its CPU seconds cover all threads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

_LAUNCHER = """
import json, os, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t
with open(out, "w") as f:
    json.dump({"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime,
               "rss_mb": ru.ru_maxrss / 1024}, f)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measure(cmd: list[str], env: dict | None = None, cwd=None) -> dict:
    """Run ``cmd``; returns ``wall_s``, ``cpu_s``, ``rss_mb`` and its ``stdout``.

    Raises ``RuntimeError`` with the tail of its stderr when it fails.
    """
    fd, stats = tempfile.mkstemp(prefix="bench-proc-", suffix=".json")
    os.close(fd)
    try:
        proc = subprocess.run(
            [sys.executable, "-S", "-c", _LAUNCHER, stats, *cmd],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
            )
        with open(stats) as f:
            res = json.load(f)
    finally:
        os.unlink(stats)
    res["stdout"] = proc.stdout
    return res


def last_json(stdout: str) -> dict:
    """The last line of a command's output that is a JSON object (the CLI's summary)."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON summary in the output:\n{stdout[-2000:]}")
