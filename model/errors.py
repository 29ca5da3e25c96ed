"""The one exception type for problems a user can fix: bad data, an impossible configuration, a corrupt file.

The command line turns it into one clear message and a non-zero exit, without a traceback.
"""


class IntformerError(Exception):
    """A problem with the user's input, with what to do about it in the message."""
