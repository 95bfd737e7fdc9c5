# The two commands: `make demo` and `make test`. Both set up what is missing first.
SHELL := /bin/bash
PY := .venv/bin/python
STAMPS := .stamps
# Steady allocator behaviour for PyTorch's LSTM kernels (see rnnt/cli.py: tune_malloc).
export MALLOC_MMAP_THRESHOLD_ := 33554432
export MALLOC_TRIM_THRESHOLD_ := 1073741824
DEMO_CORPUS := datasets/demo
DEMO_MODEL := models/demo/model.pt
DEMO_EXPORT := exports/demo
DEMO_LM := logs/demo-lm.npz
DEMO_HOTWORDS := logs/demo-test-hotwords.txt
SHERPA_MODEL := models/demo-sherpa/model.pt
SHERPA_EXPORT := exports/demo-sherpa
HELD_OUT := $(DEMO_CORPUS)/test/7002/2002/7002-2002-0033.flac
DEMO_RETRAIN_MINUTES ?= 12

.PHONY: demo test setup system venv lint typecheck pytest corpus clean

setup: system venv

system: $(STAMPS)/system
$(STAMPS)/system: tools/setup_system.sh
	bash tools/setup_system.sh
	@mkdir -p $(STAMPS) && touch $@

venv: $(STAMPS)/venv
$(STAMPS)/venv: pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1
	$(PY) -m pip install -q -e ".[all]"
	@mkdir -p $(STAMPS) && touch $@

lint: setup
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

typecheck: setup
	$(PY) -m mypy rnnt

pytest: setup
	$(PY) -m pytest

test: lint typecheck pytest

corpus: setup
	$(PY) tools/make_demo_corpus.py --output_dir=$(DEMO_CORPUS)

demo: corpus
	@echo "== 1/6 retrain briefly from flagfiles/demo.txt to show the learning curve ($(DEMO_RETRAIN_MINUTES) min)"
	rm -rf logs/demo-retrain
	.venv/bin/torchrun --nproc_per_node=2 train.py --flagfile=flagfiles/demo.txt --name=demo-retrain \
		--max_minutes=$(DEMO_RETRAIN_MINUTES) --eval_every=100 --dev_max_utterances=60
	$(PY) tools/learning_curve.py --run_dir=logs/demo-retrain
	@echo "== 2/6 evaluate the shipped demo model ($(DEMO_MODEL)) on unseen sentences and voices"
	$(PY) train.py --mode=eval --checkpoint=$(DEMO_MODEL) --eval_set=$(DEMO_CORPUS)/dev
	$(PY) train.py --mode=eval --checkpoint=$(DEMO_MODEL) --eval_set=$(DEMO_CORPUS)/test --per_speaker
	$(PY) train.py --mode=eval --checkpoint=$(DEMO_MODEL) --eval_set=$(DEMO_CORPUS)/test --beam_size=4
	$(PY) tools/train_lm.py --model=$(DEMO_MODEL) --text=$(DEMO_CORPUS)/train --dev=$(DEMO_CORPUS)/dev \
		--output=$(DEMO_LM)
	$(PY) train.py --mode=eval --checkpoint=$(DEMO_MODEL) --eval_set=$(DEMO_CORPUS)/test --beam_size=4 \
		--lm=$(DEMO_LM)
	$(PY) train.py --mode=eval --checkpoint=$(DEMO_MODEL) --eval_set=$(DEMO_CORPUS)/test --beam_size=8 \
		--lm=$(DEMO_LM) --ctc_rescore_weight=0.2
	$(PY) tools/hotword_list.py --train=$(DEMO_CORPUS)/train --eval_set=$(DEMO_CORPUS)/test \
		--distractors=$(DEMO_CORPUS)/dev --output=$(DEMO_HOTWORDS)
	$(PY) train.py --mode=eval --checkpoint=$(DEMO_MODEL) --eval_set=$(DEMO_CORPUS)/test --beam_size=8 \
		--lm=$(DEMO_LM) --ctc_rescore_weight=0.2 --hotwords=$(DEMO_HOTWORDS)
	@echo "-- the same model, offline, heard at seven speeds (an ensemble: 7x the search; README, 'An ensemble')"
	$(PY) train.py --mode=eval --checkpoint=$(DEMO_MODEL) --eval_set=$(DEMO_CORPUS)/test --beam_size=16 \
		--lm=$(DEMO_LM) --ctc_rescore_weight=0.2 --ensemble_speeds=0.85,0.9,0.95,1.0,1.05,1.1,1.15
	@echo "== 3/6 export to ONNX and OpenVINO (fp32 + int8), checked against PyTorch"
	$(PY) export_onnx.py --checkpoint=$(DEMO_MODEL) --output_dir=$(DEMO_EXPORT) --int8
	@echo "== 4/6 stream-caption a held-out recording with ONNX Runtime (greedy; then beam search with the hotwords)"
	$(PY) stream.py --model=$(DEMO_EXPORT) --backend=onnx --input=$(HELD_OUT) --chunk_ms=600
	$(PY) stream.py --model=$(DEMO_EXPORT) --backend=onnx --input=$(HELD_OUT) --format=srt --output=logs/held-out.srt
	cat logs/held-out.srt
	$(PY) stream.py --model=$(DEMO_EXPORT) --backend=onnx --input=$(HELD_OUT) --beam_size=4 --hotwords=$(DEMO_HOTWORDS)
	@echo "== 5/6 benchmark PyTorch vs ONNX Runtime vs OpenVINO on the demo test set"
	$(PY) tools/benchmark.py --checkpoint=$(DEMO_MODEL) --export_dir=$(DEMO_EXPORT) \
		--manifest=$(DEMO_CORPUS)/test --max_utterances=300 --output=logs/demo-benchmark.json
	@echo "== 6/6 sherpa-onnx: export the stateless demo model for it, decode the test set with sherpa-onnx"
	$(PY) export_onnx.py --format=sherpa-onnx --checkpoint=$(SHERPA_MODEL) --output_dir=$(SHERPA_EXPORT) --int8
	$(PY) tools/eval_sherpa.py --export_dir=$(SHERPA_EXPORT) --eval_set=$(DEMO_CORPUS)/test \
		--checkpoint=$(SHERPA_MODEL)
	$(PY) tools/eval_sherpa.py --export_dir=$(SHERPA_EXPORT) --eval_set=$(DEMO_CORPUS)/test --precision=int8

clean:
	rm -rf $(STAMPS) logs exports
