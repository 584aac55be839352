import sys

from affbench.cli import main

sys.exit(main())
