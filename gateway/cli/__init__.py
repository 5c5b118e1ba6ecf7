"""The ``gateway`` command line: the service, Asterisk, incidents, the subscriber directory, warnings."""
