from faultlines.cli import main

main()
