"""`python -m benchmarks NAME [options]`: benchmarks/harness.py."""
import sys

from benchmarks.harness import main

sys.exit(main())
