"""``labsim serve`` in its own process, as a user runs it: its live log read as it comes
(``wait_for``), stopped by a signal (``stop``) or killed (``kill``, always, on the way out
of ``labsim_serve``)."""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import sys
import threading
import time


class ServeProcess:
    def __init__(self, scenario_path: str, report_dir: str, *extra: str, prefix: tuple[str, ...] = ()):
        # ``prefix``: a command to run it through (``ip netns exec NS``: in a namespace lab).
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "labsim", "serve", scenario_path, "--report-dir", report_dir, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stderr = ""

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        """The first line (already seen or still to come) containing ``text``."""
        for line in self.lines:
            if text in line:
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} from labsim serve; got {self.lines}; stderr: {self._stderr()}")

    def _stderr(self) -> str:
        if self.proc.poll() is not None and not self.stderr:
            self.stderr = self.proc.stderr.read()
        return self.stderr

    def stop(self, sig=signal.SIGINT, timeout: float = 15.0) -> int:
        """Signal it and wait for it to end; the rest of its output lands in ``lines``."""
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        self._stderr()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(Exception):
                stream.close()


@contextlib.contextmanager
def labsim_serve(scenario_path: str, report_dir: str, *extra: str, prefix: tuple[str, ...] = ()):
    serve = ServeProcess(scenario_path, report_dir, *extra, prefix=prefix)
    try:
        yield serve
    finally:
        serve.kill()
