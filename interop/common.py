"""What the Python interop scripts share: their checks, the processes they start and stop, and
a requests session that records every exchange.

Each script adds this directory to sys.path and imports it (`import common`).
"""

import os
import signal
import socket
import subprocess
import sys
import time

STARTUP_TIMEOUT_S = 60
POLL_S = 0.1

failures = []
passed = 0


def check(condition, what):
    """Prints one line for the check and remembers a failure for `finish`; returns `condition`."""
    global passed
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if condition:
        passed += 1
    else:
        failures.append(what)
    return condition


def require(condition, what):
    """A check the rest of the run depends on: the run ends at once if it fails."""
    if not check(condition, what):
        finish("interop")


def finish(name):
    """Ends the run: non-zero exit status unless every check passed."""
    if failures:
        sys.exit(f"{name}: {len(failures)} check(s) failed, {passed} passed")
    print(f"{name}: all {passed} checks passed", flush=True)


def stop_on_sigterm():
    """Stopped from outside, the script still stops its processes (`finally` runs on exit)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def challenge(response):
    return response.headers.get("WWW-Authenticate", "")


class Process:
    """A child process whose output goes to a log file, which the checks may read."""

    def __init__(self, name, args, workdir, env=None, stdin=None, cwd=None):
        self.name = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(args, stdin=stdin, stdout=self.log,
                                        stderr=subprocess.STDOUT, env=env, cwd=cwd)

    def lines(self):
        with open(self.log_path) as f:
            return f.read().splitlines()

    def wait_for_line(self, prefix, after=0, timeout=STARTUP_TIMEOUT_S):
        """The first line from index `after` on that starts with `prefix`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines()[after:]:
                if line.startswith(prefix):
                    return line
            if self.process.poll() is not None:
                break
            time.sleep(POLL_S)
        raise RuntimeError(f"{self.name}: no line '{prefix}...' within {timeout} s "
                           f"(exit status {self.process.poll()}):\n" + "\n".join(self.lines()))

    def wait_for_port(self, port, timeout=STARTUP_TIMEOUT_S):
        """Returns once 127.0.0.1:`port` accepts connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(POLL_S)
        raise RuntimeError(f"{self.name}: not listening on port {port} within {timeout} s "
                           f"(exit status {self.process.poll()}):\n" + "\n".join(self.lines()))

    def ready(self, wait, *args):
        """`wait(*args)` (one of the two above); stops the process if it is never ready."""
        try:
            return wait(*args)
        except Exception:
            self.stop()
            raise

    def stop(self):
        if self.process.poll() is None and self.process.stdin:
            self.process.stdin.close()  # a process that exits on end of input may do so
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def print_log(self):
        print(f"--- {self.log_path}\n{open(self.log_path).read()}", flush=True)


def recording_session(timeout=None):
    """A requests session that remembers every (request, response), a client library's own
    retries included; with `timeout`, every request has one."""
    import requests
    from requests.adapters import HTTPAdapter

    class Recorder(HTTPAdapter):
        def __init__(self):
            super().__init__()
            self.exchanges = []

        def send(self, request, **kwargs):
            if timeout is not None:
                kwargs["timeout"] = kwargs.get("timeout") or timeout
            response = super().send(request, **kwargs)
            self.exchanges.append((request, response))
            return response

    s = requests.Session()
    recorder = Recorder()
    s.mount("http://", recorder)
    return s, recorder
