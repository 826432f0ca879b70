"""The ``socketkit`` command line: ``main(argv) -> int``, subcommands imported lazily."""
