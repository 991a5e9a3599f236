"`python -m dlvp_clip ...`: the `dlvp-clip` command (see nbs/90_cli.ipynb)."
import sys
from dlvp_clip.cli import main

if __name__ == '__main__': sys.exit(main())
