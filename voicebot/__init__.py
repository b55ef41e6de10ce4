"""voicebot: a realtime voice AI IVR and virtual agent server."""

__version__ = "0.1.0"
