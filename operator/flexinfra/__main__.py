from flexinfra.cli import main

raise SystemExit(main())
