"""The Gradio Space's logic, as package code; `files/app.py` (the Space itself) only wires it to a page.

- `environment`: settings, the one temporary folder, the model list, messages without file-system paths.
- `store`: models loaded on first use, one lock per model, the most recent few kept.
- `images`: safe decoding of uploads; RGB for display (the model's processor does the preprocessing).
- `inference`: the model run (probabilities and cross-attention maps) and zero-shot label names.
- `render`: colour map, attention overlays at display size, score views, captions.
- `downloads`: CSV / JSON results and display images as files of their own.
- `examples`: the example images that fit a model's label set.

`files/` holds the Space as it is deployed (app.py, requirements.txt, README.md, examples/); it is package
data, so `hf-mlcls deploy-space` finds it in any installation. Nothing here imports gradio.
"""
