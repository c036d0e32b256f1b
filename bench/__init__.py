"""Performance benchmark of the TradeGuard stack: transport ceiling, order throughput and latency.

``python -m bench.run`` runs everything once and writes ``bench/results/``;
``python -m bench.profile`` samples each service with py-spy under a fixed load.
"""
