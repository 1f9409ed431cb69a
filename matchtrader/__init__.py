"""Match-Trader broker boundary: protocol description, REST client, market-data transports and
a local exchange simulator that speaks the same HTTP + WebSocket protocol."""
