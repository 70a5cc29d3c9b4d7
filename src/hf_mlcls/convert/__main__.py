"""`python -m hf_mlcls.convert CHECKPOINT --preset NAME OUTPUT_DIR`: the same as `hf-mlcls convert`."""

import sys

from ..cli import main

sys.exit(main(["convert", *sys.argv[1:]]))
