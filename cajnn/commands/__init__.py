"""One module per `cajnn` subcommand; each defines `register(app)`."""
