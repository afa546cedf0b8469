from emodesk.cli.main import main

raise SystemExit(main())
