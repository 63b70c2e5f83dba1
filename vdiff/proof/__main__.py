"""`python -m vdiff.proof`: the proof harness's command line (vdiff/proof/harness.py)."""

import sys

from vdiff.proof.harness import main

if __name__ == "__main__":
    sys.exit(main())
