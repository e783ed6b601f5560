"""``python -m ocs_core.cli``: the ``ocs-core`` command."""
import sys

from ocs_core.cli.main import main

sys.exit(main())
