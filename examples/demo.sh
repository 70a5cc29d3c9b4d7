#!/usr/bin/env bash
# The main job on the built-in demo data: train (accelerate + Trainer), evaluate the saved
# model, then predict labels for a folder of held-out images.
#   bash examples/demo.sh                      # the whole recipe (examples/configs/demo.yaml)
#   bash examples/demo.sh --max_steps 2 --max_eval_samples 64    # shortened: any train.py argument overrides the recipe
set -euo pipefail
cd "$(dirname "$0")/.."
# outputs/demo is the demo's own folder: a new run replaces the previous demo result (train.py refuses any other
# folder that holds a model or a run unless told --overwrite_output_dir true)
accelerate launch examples/train.py examples/configs/demo.yaml --overwrite_output_dir true "$@"
python examples/evaluate.py --model outputs/demo --dataset demo --split validation --output_dir outputs/demo/eval
images="$(python -c 'from hf_mlcls.data import default_demo_dir; print(default_demo_dir())')/val2017"
hf-mlcls predict outputs/demo "$images" --threshold 0.5 --output outputs/demo/predictions.csv
head -n 9 outputs/demo/predictions.csv
