"""`python -m service` behaves exactly like the `announce` command."""

from service.cli import main

raise SystemExit(main())
