from streamlearn.app.cli import main

raise SystemExit(main())
