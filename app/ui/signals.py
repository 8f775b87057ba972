"""Ctrl-C (SIGINT) and SIGTERM for the desktop app: handled like the window's close button.

Python runs signal handlers only between bytecodes of the main thread, and Qt's event loop is C++: a
plain ``KeyboardInterrupt`` would surface inside whatever Qt slot runs next, where PyQt prints a
traceback and aborts, leaving a half-written recording. :class:`QuitOnSignal` instead

1. installs Python handlers at once (call :meth:`QuitOnSignal.install` first thing, before the slow
   imports and the model loading), which only note the signal;
2. once the window exists (:meth:`QuitOnSignal.attach`), wakes the Qt event loop through
   :func:`signal.set_wakeup_fd` and a :class:`QSocketNotifier`, and calls the given ``quit`` callback
   from the event loop (the app closes its window: the worker stops, the recording is finalised);
3. reports the exit code: 130 after SIGINT (128 + 2, the shell's convention for Ctrl-C), 0 after
   SIGTERM (a polite request to stop, honoured).

A second signal while the app is shutting down exits at once (``os._exit``) with a one-line message;
a recording is still playable up to its last fragment (see :mod:`app.recording`).
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from types import FrameType
from typing import Callable

LOG = logging.getLogger(__name__)

HANDLED_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
EXIT_CODES: dict[int, int] = {int(signal.SIGINT): 130, int(signal.SIGTERM): 0}
"""Process exit code after each handled signal."""


class QuitOnSignal:
    """Turns SIGINT/SIGTERM into a clean quit of a Qt application (see the module docstring).

    Use from the main thread::

        quitter = QuitOnSignal().install()        # first thing
        ...                                       # imports, window
        quitter.attach(window.close)              # QApplication exists now
        code = app.exec()
        code = quitter.exit_code(code)
        quitter.restore()
    """

    def __init__(self) -> None:
        self.received: int | None = None
        """The first signal received (its number), or None."""
        self._previous: dict[int, object] = {}
        self._previous_wakeup_fd = -1
        self._quit: Callable[[], None] | None = None
        self._notifier = None
        self._sockets: tuple[socket.socket, socket.socket] | None = None
        self._quit_scheduled = False

    def install(self) -> "QuitOnSignal":
        """Replace the SIGINT/SIGTERM handlers (main thread only); returns ``self``."""
        for sig in HANDLED_SIGNALS:
            self._previous[int(sig)] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            name = signal.Signals(signum).name
            print(f"\n{name} received again: exiting without waiting for the app to finish "
                  "(a recording stays playable up to its last fragment)", file=sys.stderr, flush=True)
            os._exit(EXIT_CODES.get(self.received, 1))
        self.received = int(signum)
        LOG.info("%s received: closing the app", signal.Signals(signum).name)
        if self._quit is not None:
            self._schedule_quit()

    def attach(self, quit: Callable[[], None]) -> None:
        """Wake the running Qt event loop on a signal and call ``quit`` from it (once).

        Needs a ``QCoreApplication``. When a signal came before this call, ``quit`` runs as soon as the
        event loop starts.
        """
        from PyQt6.QtCore import QSocketNotifier

        self._quit = quit
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._sockets = (reader, writer)
        self._previous_wakeup_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        self._notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Type.Read)
        # The Python handler runs before this slot's first bytecode; the slot only drains the socket.
        self._notifier.activated.connect(self._drain)
        if self.received is not None:
            self._schedule_quit()

    def _drain(self, *_: object) -> None:
        if self._sockets is None:
            return
        try:
            while self._sockets[0].recv(64):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _schedule_quit(self) -> None:
        if self._quit_scheduled or self._quit is None:
            return
        self._quit_scheduled = True
        from PyQt6.QtCore import QTimer

        QTimer.singleShot(0, self._quit)  # from the event loop, never from inside another slot

    def exit_code(self, default: int) -> int:
        """The process exit code: the signal's (:data:`EXIT_CODES`) when one came, else ``default``."""
        return EXIT_CODES.get(self.received, default) if self.received is not None else default

    def restore(self) -> None:
        """Put the previous handlers and wakeup fd back (main thread only); safe to call twice."""
        if self._sockets is not None:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
            if self._notifier is not None:
                try:
                    self._notifier.setEnabled(False)
                except RuntimeError:  # already deleted with the QApplication
                    pass
                self._notifier = None
            for sock in self._sockets:
                sock.close()
            self._sockets = None
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()
        self._quit = None
