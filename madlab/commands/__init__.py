"""One module per `madlab` sub-command; each exposes `register(app)`."""
