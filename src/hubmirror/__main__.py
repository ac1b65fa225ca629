"""`python -m hubmirror` runs the command line."""

import sys

from hubmirror.cli import main

sys.exit(main())
