"""Sub-commands of `hf-mlcls`, discovered by module: each defines `register(subparsers)`."""
