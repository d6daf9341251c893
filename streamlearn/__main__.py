from streamlearn.cli import main

raise SystemExit(main())
