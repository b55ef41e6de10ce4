"""The SIP user agent: sans-I/O protocol code (message, sdp, transaction, dialog) plus thin
asyncio glue.  Named voicebot.sip because a top-level ``sip`` package clashes with PyQt's."""
