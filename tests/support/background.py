"""A test producer's background thread: runs once, keeps the error for :meth:`join`."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Background:
    """Runs one function in a thread; :meth:`join` waits for it and re-raises its error."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def launch(self, run: Callable[[], None], name: str) -> None:
        def guarded() -> None:
            try:
                run()
            except BaseException as exc:  # reported by join()
                self.error = exc

        self.stop.clear()
        self._thread = threading.Thread(target=guarded, name=name, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float = 120.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), "the producer did not finish"
        if self.error is not None:
            raise self.error

    def halt(self, timeout: float = 30.0) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
