from agentfire.cli import main

main()
