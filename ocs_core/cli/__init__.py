"""The ``ocs-core`` command: the parser in ``main``, one module per group of subcommands."""
