from volumed.cli.main import main

main()
