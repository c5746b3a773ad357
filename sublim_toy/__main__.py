import sys

from sublim_toy.cli import main

sys.exit(main())
