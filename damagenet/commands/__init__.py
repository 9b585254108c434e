"""The ``damagenet`` subcommands: argparse wiring only, one module per command.

Each module has ``add_parser(subparsers)``; the library it calls is imported inside the run
function, so ``damagenet --help`` stays quick.
"""
