from tcpdoctor.cli import main

main()
