"""The ``stateward`` command line: every command calls the service, offline on the data dir."""
