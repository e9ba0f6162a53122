"""Helpers for tests that kill a process in the middle of its work."""

import json
import signal
import subprocess
import sys
import textwrap
import time


def kill_during_second_run(script, argument, cwd, extra_delay):
    """Run ``python -c script argument`` in ``cwd``; once it has made the file "first-done"
    (its first run is whole), wait ``extra_delay`` seconds into its second run and SIGKILL
    it."""
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), str(argument)],
                               cwd=cwd)
    while not (cwd / "first-done").exists():
        assert process.poll() is None, "the first run failed"
        time.sleep(0.01)
    time.sleep(extra_delay)
    process.send_signal(signal.SIGKILL)
    process.wait()


def whole_run_report(folder):
    """The report.json of ``folder``, after checking that every file it names is there; None
    when there is no report."""
    path = folder / "report.json"
    if not path.exists():
        return None
    report = json.loads(path.read_text())
    for name in report["files"]:
        assert (folder / name).exists(), name
    return report
