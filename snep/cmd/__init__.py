"""One module per ``snep`` subcommand: ``add_arguments(parser)`` and ``main(args)``."""
