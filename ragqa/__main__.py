from ragqa.cli import main

raise SystemExit(main())
