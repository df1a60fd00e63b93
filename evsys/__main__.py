"""``python -m evsys [overrides]``: compose, validate and run the experiment."""

from evsys.app import main

if __name__ == "__main__":
    main()
