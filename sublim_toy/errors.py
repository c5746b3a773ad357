"""The exception types the CLI turns into one line: user mistakes (exit 2) and interrupts, and
the Ctrl-C handling that makes sure an interrupt reaches the command."""

import contextlib
import signal
import sys
import threading


class UserError(Exception):
    """A bad value or missing resource the user can fix; the message says how."""


class ConfigError(UserError):
    """A bad Config value. It knows the fields involved, so the CLI can name the flags the
    user typed instead of the field names (`--batch-size 100000`, not `batch_size`)."""

    def __init__(self, detail: str, **values):
        self.detail = detail
        self.values = values  # field -> offending value; the first is the one the check is about
        named = " with ".join(f"{field}={value!r}" for field, value in values.items())
        super().__init__(f"{named}: {detail}")

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.values)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with a message that says what was kept (the CLI prints it as is)."""


# Set by a Ctrl-C inside `ctrl_c_remembered` or `ctrl_c_held_back`, cleared where it is acted on.
_CTRL_C_PENDING = threading.Event()


@contextlib.contextmanager
def ctrl_c_remembered():
    """Within the block a Ctrl-C raises KeyboardInterrupt at once, as usual, and is remembered.

    Python runs a signal handler wherever the main thread happens to be, and an exception raised
    in a garbage-collection callback or a `__del__` is printed as "Exception ignored" and then
    dropped: JAX's collection callback is often that place, and the command ran on as if no
    Ctrl-C had come. Remembered, it stops the command at the next `stop_if_interrupted()` (after
    every training epoch) or at the end of the next `ctrl_c_held_back` block, and the dropped
    exception is not printed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous_handler = signal.signal(signal.SIGINT, _remember_and_raise)
    previous_hook = sys.unraisablehook

    def quiet_about_a_remembered_ctrl_c(unraisable):
        if not (_CTRL_C_PENDING.is_set() and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            previous_hook(unraisable)

    sys.unraisablehook = quiet_about_a_remembered_ctrl_c
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        sys.unraisablehook = previous_hook
        _CTRL_C_PENDING.clear()


def _remember_and_raise(signum, frame):
    _CTRL_C_PENDING.set()
    raise KeyboardInterrupt


def stop_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C came (inside `ctrl_c_remembered`) and was dropped."""
    if _CTRL_C_PENDING.is_set():
        _CTRL_C_PENDING.clear()
        raise KeyboardInterrupt


@contextlib.contextmanager
def ctrl_c_held_back(message: str):
    """Hold back Ctrl-C while the block runs (a few renames), then raise Interrupted(message)
    if one came during it, or came earlier and was dropped (see `ctrl_c_remembered`)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGINT, lambda *_: _CTRL_C_PENDING.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if _CTRL_C_PENDING.is_set():
        _CTRL_C_PENDING.clear()
        raise Interrupted(message)
