from vtcodec.cli import main

main()
