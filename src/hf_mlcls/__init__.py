"""hf_mlcls: query-based multi-label image classification for the Hugging Face ecosystem."""

__version__ = "0.1.0"
