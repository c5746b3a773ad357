"""The one exception type for user mistakes: the CLI prints it as one line and exits 2."""


class UserError(Exception):
    """A bad value or missing resource the user can fix; the message says how."""
