# The set-up contract: `make run` and `make test` do everything on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
# Debian packages the tests drive as real clients and tools (installed only by `make test`);
# the voice-path and SIP issues add espeak-ng, sox, sip-tester, baresip-core and chromium here.
TEST_DEBS := espeak-ng sox chromium iproute2 sip-tester baresip-core asterisk-moh-opsound-wav

.PHONY: run test install test-deps bench-deps bench-nlu bench-wer bench-sip bench-webrtc soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: resolves to the CPU build; an unpinned one pulls GBs of CUDA.
	$(PIP) install "torch==2.13.0"
	$(PIP) install -e ".[dev]"
	$(VENV)/bin/voicebot models prepare
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/voicebot serve

test-deps:
	@[ -z "$(strip $(TEST_DEBS))" ] && exit 0; missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

test: $(STAMP) test-deps
	$(PY) -m pytest

# CLINC150 ships in benchmarks/data/clinc150 (CC BY 3.0); the bank domain's own eval set is scored too.
bench-nlu: $(STAMP)
	$(PY) benchmarks/nlu_clinc150.py
	$(VENV)/bin/voicebot nlu eval --json > benchmarks/results/nlu_bank.json

# Word error rate of the server's ASR path on the Asterisk core prompts (Debian, 8 kHz phone speech, CC-BY-SA):
# tiny.en and base, full and trimmed window (~40 min on 2 cores); `make bench-wer WER_ARGS="--limit 25"` for a smoke run.
WER_DEBS := asterisk-core-sounds-en-wav asterisk-core-sounds-en
bench-wer: $(STAMP)
	$(MAKE) --no-print-directory test-deps TEST_DEBS="$(WER_DEBS)"
	$(PY) benchmarks/asr_wer.py $(WER_ARGS)

# Benchmarks plot their results (matplotlib, the `bench` extra).
bench-deps: $(STAMP)
	$(PIP) install -q -e ".[dev,bench]"

# SIP callers that speak, sweeping 1, 2, 4, 8... at once: wire latency per stage, intent accuracy, CPU and RSS (~10 min).
# `make bench-sip SIP_ARGS="--levels 1,2 --turns 2 --memory-calls 0"` for a short run; `--set key=value` changes a server setting.
bench-sip: bench-deps
	$(PY) benchmarks/sip_latency.py $(SIP_ARGS)

# voicebot against a stock pipecat 1.14 bot over WebRTC: one aiortc caller, the same utterances, back to back
# (~5 min on 2 cores; needs root for its network namespace).  `make bench-webrtc WEBRTC_ARGS="--stacks voicebot"`.
bench-webrtc: bench-deps
	$(MAKE) --no-print-directory test-deps TEST_DEBS="iproute2"
	$$( [ "$$(id -u)" = 0 ] || echo sudo ) $(PY) benchmarks/webrtc_latency.py $(WEBRTC_ARGS)

# SIPp callers that speak, at a fixed rate for 10 minutes: `make soak SOAK_ARGS="--minutes 2"` for a short run.
soak: $(STAMP) test-deps
	$(PY) benchmarks/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
