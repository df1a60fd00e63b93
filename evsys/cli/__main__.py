from evsys.cli import main

main()
