from servestack.sim.server import main

main()
