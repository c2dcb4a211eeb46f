"""Allow ``python -m stateward``."""

from stateward.cli.main import main

if __name__ == "__main__":
    main()
