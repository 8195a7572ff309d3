"""Running ``p2pdoc-node`` as separate processes for the end-to-end tests."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from p2pdoc_node.client import ApiClient
from p2pdoc_node.config import CONFIG_FILE, load_settings
from p2pdoc_node.datadir import read_token

SCRIPT = Path(sys.executable).with_name("p2pdoc-node")
TIMEOUT = 60


def cli(
    *args: str | Path, check: bool = True, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run one CLI command to completion."""
    done = subprocess.run(
        [str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{args} -> {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


class Lines:
    """The lines a process writes to a pipe, collected by a thread; wait for one with
    :meth:`expect` (blocks on the queue, bounded by a timeout)."""

    def __init__(self, pipe: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self._thread.start()

    def _pump(self, pipe: IO[str]) -> None:
        for line in pipe:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, text: str, timeout: float = TIMEOUT) -> str:
        for line in self.seen:
            if text in line:
                return line
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"ended without {text!r}:\n" + "\n".join(self.seen[-40:]))
            self.seen.append(line)
            if text in line:
                return line

    def rest(self) -> str:
        self._thread.join(timeout=TIMEOUT)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)
        return "\n".join(self.seen)


class Daemon:
    """``p2pdoc-node run`` in its own process, logging JSON."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.process = subprocess.Popen(
            [str(SCRIPT), "run", "--data", str(data), "--log-format", "json"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stderr is not None
        self.log = Lines(self.process.stderr)
        self.api: ApiClient | None = None

    def started(self) -> ApiClient:
        """Wait for the daemon's start-up line; a client of its API."""
        line = self.log.expect('"event": "started"')
        url = json.loads(line)["api"]
        settings = load_settings(self.data / CONFIG_FILE, env={})
        self.api = ApiClient(
            url, read_token(settings.resolve(settings.api.token_file)), timeout=TIMEOUT
        )
        return self.api

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=TIMEOUT)
        self.log.rest()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=TIMEOUT)
        self.log.rest()
        assert self.process.stderr is not None
        self.process.stderr.close()


def events_until(
    api: ApiClient, done: Any, *, after: int = 0, rounds: int = 6
) -> list[dict[str, Any]]:
    """Long-poll the event feed until ``done(events so far)`` holds (at most ``rounds``
    polls of up to 10 s each)."""
    seen: list[dict[str, Any]] = []
    for _ in range(rounds):
        feed = api.get("/api/v1/events", after=after, wait=10).json()
        seen += feed["events"]
        if feed["events"]:
            after = feed["events"][-1]["seq"]
        if done(seen):
            return seen
    raise AssertionError(f"events never satisfied the condition: {seen[-10:]}")
