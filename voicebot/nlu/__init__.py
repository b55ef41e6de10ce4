"""Pure conversation logic: domain loading, intents, entities and the dialog state machine.

Nothing here touches sockets, pipecat or asyncio transports; it is exercised with plain calls.
"""
