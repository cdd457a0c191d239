from servestack.cli import main

main()
