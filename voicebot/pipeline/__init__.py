"""The realtime voice path: one pipecat pipeline per call, shared ASR/TTS engines.

Pipecat is used only inside this package.
"""
