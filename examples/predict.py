#!/usr/bin/env python
"""Predict labels for images or folders of images with a saved or Hub model.

    python examples/predict.py outputs/demo path/to/images --threshold 0.5 --output predictions.csv

The same as `hf-mlcls predict`.
"""

import argparse
import sys

from hf_mlcls.commands.predict import add_arguments, run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    from hf_mlcls.cli import run_user_command

    sys.exit(run_user_command("predict.py", run, parser.parse_args()))
