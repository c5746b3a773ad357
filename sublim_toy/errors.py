"""The exception types the CLI turns into one line: user mistakes (exit 2) and interrupts."""


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
