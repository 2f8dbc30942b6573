import sys

from fastgan.cli import main

sys.exit(main())
