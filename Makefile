# The two commands of the README, each installing what it needs into .venv.
VENV ?= .venv
PY := $(VENV)/bin/python
export NO_GCE_CHECK ?= true

# The embedded default: three bundled photographs train a sandwich around a
# full-resolution YCbCr 4:2:0 JPEG (high_res at factor 1), a fourth (coffee.png)
# is held out for compression and evaluation against plain JPEG and jpegli.
DEMO ?= out/demo
DEMO_STEPS ?= 1200
BIN := $(VENV)/bin
SAMPLES := sandwich/data/samples

.PHONY: demo library-demo test bench system-packages models

# The browser decoder's runtime, pinned by web/package-lock.json (npm ci
# writes this file last).
WEB_RUNTIME := web/node_modules/.package-lock.json

$(VENV)/.installed: setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,tensorboard]'
	touch $@

# Debian packages the evaluator and the browser tests run, as tool:package:
# Butteraugli (libjxl-devtools), headless Chromium with its WebDriver, and
# Node's npm, which installs the page's onnxruntime-web
# (web/package-lock.json). Only the packages of missing tools are installed
# (as root, as on CI; otherwise the command says what to install), so a
# machine whose node and npm came from elsewhere (NodeSource's nodejs
# conflicts with Debian's npm) keeps them.
DEBIAN_TOOLS := butteraugli_main:libjxl-devtools chromium:chromium \
  chromedriver:chromium-driver node:nodejs npm:npm

system-packages:
	@missing=""; for pair in $(DEBIAN_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $$missing >/dev/null; \
	  else echo "missing tools; run: sudo apt-get install$$missing"; exit 1; fi; \
	fi

$(WEB_RUNTIME): web/package.json web/package-lock.json | system-packages
	npm ci --prefix web --ignore-scripts --no-audit --no-fund

demo: $(VENV)/.installed system-packages $(WEB_RUNTIME)
	rm -rf $(DEMO) && mkdir -p $(DEMO)/photos/train $(DEMO)/photos/held_out
	cp $(SAMPLES)/astronaut.png $(SAMPLES)/chelsea.png $(SAMPLES)/rocket.png $(DEMO)/photos/train/
	cp $(SAMPLES)/coffee.png $(DEMO)/photos/held_out/
	@echo "== 1/7 dataset: 64x64 patches at full resolution (Beam, FnApiRunner)"
	$(BIN)/sandwich-dataset --input '$(DEMO)/photos/train/*.png' --output $(DEMO)/dataset \
	  --scenario high_res --factor 1 --patch_size 64 --patches_per_image 256 --eval_fraction 0.34
	@echo "== 2/7 training on the CPU ($(DEMO_STEPS) steps), TensorBoard logs in $(DEMO)/run/logs"
	$(BIN)/sandwich-train --data $(DEMO)/dataset --job_dir $(DEMO)/run --steps $(DEMO_STEPS) \
	  --summary_every 100 \
	  --checkpoint_every 400 --refit_every 400 --eval_every 600 --image_every 600 --seed 0
	@echo "== 3/7 compress the held-out photo to a plain JPEG bottleneck"
	$(BIN)/sandwich-compress --input '$(DEMO)/photos/held_out/*.png' --model $(DEMO)/run/export \
	  --output $(DEMO)/bottlenecks
	@echo "== 4/7 decompress it back to a PNG at the original size"
	$(BIN)/sandwich-decompress --input '$(DEMO)/bottlenecks/*.jpg' --model $(DEMO)/run/export \
	  --output $(DEMO)/restored
	@echo "== 5/7 rate-distortion with the real codec against the baseline, plain JPEG and jpegli"
	$(BIN)/sandwich-eval --models $(DEMO)/run/export --input '$(DEMO)/photos/held_out/*.png' \
	  --output $(DEMO)/eval
	@echo "== 6/7 no training: the shipped models (codec/models) code it to 0.5 bpp and back"
	$(BIN)/sandwich-compress --input '$(DEMO)/photos/held_out/*.png' --target_bpp 0.5 \
	  --output $(DEMO)/shipped/bits
	$(BIN)/sandwich-decompress --input '$(DEMO)/shipped/bits/*.jpg' --output $(DEMO)/shipped/restored
	@echo "== 7/7 the post-processor in the browser: the held-out photo's file beside plain JPEG at its bytes"
	$(PY) -m codec.web_export --model $(DEMO)/run/export --output $(DEMO)/web \
	  --demo $(DEMO)/bottlenecks/coffee.png.jpg --source $(DEMO)/photos/held_out/coffee.png
	@echo "RD plots: $(DEMO)/eval/rd*.png; the page with plots, BD tables and side-by-side crops: $(DEMO)/eval/report.html"

library-demo: $(VENV)/.installed system-packages
	$(PY) -m sandwich.demo

test: $(VENV)/.installed system-packages $(WEB_RUNTIME)
	$(BIN)/ruff check .
	$(PY) -m pytest

# The models that ship in the package (codec/models, docs/models.md): trained
# on the public corpus (photos/public, from the SelfExSR repository) and the
# bundled photos, one photo in ten of the corpus held out, then evaluated on
# them against plain JPEG and jpegli and copied into the package with what
# was measured. About 160 minutes on 2 cores.
PUBLIC := photos/public
SELFEXSR := /tmp/SelfExSR
MODELS_RUN := out/models
MODELS := 'hr-x1-r2=high_res:1:--objective psnr --max_train_minutes 30' \
  'hr-x1-perceptual-r3=high_res:1:--objective perceptual --max_train_minutes 30' \
  'hr-x2-r1=high_res:2:--objective psnr' \
  'hr-x2-perceptual-r2=high_res:2:--objective perceptual --max_train_minutes 30' \
  hr-x4-r1=high_res:4 hbd-x1-r1=high_bit_depth:1

$(PUBLIC):
	[ -d $(SELFEXSR) ] || git clone --depth 1 https://github.com/jbhuang0604/SelfExSR $(SELFEXSR)
	$(PY) benchmarks/corpus.py $(SELFEXSR) $@

# Real 16-bit photographs (OpenEXR's samples developed to PNG; BSD-3-Clause).
HDR := photos/hdr
OPENEXR_IMAGES := /tmp/openexr-images

$(HDR): $(VENV)/.installed
	[ -d $(OPENEXR_IMAGES) ] || git clone --depth 1 \
	  https://github.com/AcademySoftwareFoundation/openexr-images $(OPENEXR_IMAGES)
	$(PY) -m pip install --quiet -e '.[hdr]'
	$(PY) benchmarks/hdr_corpus.py $(OPENEXR_IMAGES) $@

models: $(VENV)/.installed system-packages $(PUBLIC)
	$(PY) benchmarks/quality.py --budget_minutes 123 --patches_per_photo 128 \
	  --add_train '$(PUBLIC)/*[1-9].png' --add_held_out '$(PUBLIC)/*[05]0.png' \
	  --models $(MODELS) --output $(MODELS_RUN) --report $(MODELS_RUN)/quality.md
	$(PY) benchmarks/release_models.py --run $(MODELS_RUN) --to codec/models \
	  --supersede hr-x1-perceptual-r1=hr-x1-perceptual-r2 hr-x1-perceptual-r2=hr-x1-perceptual-r3 \
	  hr-x1-r1=hr-x1-r2 hr-x2-perceptual-r1=hr-x2-perceptual-r2
	$(PY) benchmarks/inference_precision.py --record

# Throughput and the codec-mode table; the quality benchmark (90 training
# minutes by default) and the fuzz campaign run on their own.
BENCHMARKS := $(filter-out benchmarks/corpus.py benchmarks/quality.py benchmarks/fuzz_campaign.py \
  benchmarks/release_models.py benchmarks/hdr_corpus.py,\
  $(wildcard benchmarks/*.py))

bench: $(VENV)/.installed system-packages $(WEB_RUNTIME)
	for script in $(BENCHMARKS); do $(PY) $$script || exit 1; done
