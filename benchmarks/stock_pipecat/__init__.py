"""A stock pipecat bot, built the way pipecat's own examples and ``pipecat init`` templates build
one, for ``benchmarks/webrtc_latency.py`` to compare voicebot against.

It shares nothing with voicebot but the model files (``voicebot.modelstore.resolve``): pipecat's
``SmallWebRTCTransport`` behind a FastAPI ``POST /api/offer``, ``WhisperSTTService`` (Whisper
tiny.en, CPU, int8), an ``LLMContextAggregatorPair`` with ``SileroVADAnalyzer()`` and pipecat's
default user-turn strategies (smart-turn v3), and ``PiperTTSService`` with the joe voice.  There
is no LLM offline: ``responder.CannedResponder`` stands where it would and answers with canned
text.
"""
