"""One module per `python -m affbench` command: configure(parser) and execute(args)."""
