"""``python -m clstock_otel_distro.doctor``."""

import sys

from clstock_otel_distro.doctor import main

sys.exit(main())
