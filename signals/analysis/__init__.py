"""Pure market analysis: arrays and dataclasses in, results out (no Redis, no ORM, no clock).

volume      - volume surge (ratio, z-score), buy/sell ratio (known side or tick rule), direction
orderbook   - weighted bid/ask imbalance, large resting orders (walls)
levels      - support/resistance from swing pivots and walls, clustered in ticks
indicators  - RSI, EMA fast/slow, ATR via TA-Lib
synthetic   - realistic MarketWindow builders for tests and the benchmark
The strategy that combines them is ``signals.strategy``; formulas are in signals/ANALYSIS.md.
"""
