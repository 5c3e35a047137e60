"""``python -m heimdall_synth.service.cli``: the same as the ``heimdall-synth`` command."""

import sys

from .main import main

sys.exit(main())
