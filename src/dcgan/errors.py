"""The one exception type that the CLI turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """Bad input from the user: a flag value, a data folder, a checkpoint. Never a bug."""
