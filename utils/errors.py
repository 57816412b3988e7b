"""The toolkit's one error type for bad input."""


class OsloError(Exception):
    """An expected failure caused by the user's input (file, flag, data); the scripts print it
    as one line ``error: ...`` and exit with code 2 (:func:`utils.cli.run_main`)."""
