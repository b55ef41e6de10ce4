"""The ACD and what surrounds it, all pure: queues, agents and offers (acd.py, strategies.py),
what the agent sees (context.py), the queue log (queue_log.py).  No asyncio, no I/O: events
and ``now`` in, actions out; ``voicebot/calls.py`` carries the actions out."""
