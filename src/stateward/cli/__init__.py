"""The ``stateward`` command line: options, progress and printing; every command runs its
operations through the gate (offline, on the data directory)."""
