"""``python -m iscli``: the same as the ``is-cli`` command."""

import sys

from iscli.cli import main

sys.exit(main())
