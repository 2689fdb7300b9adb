"""Latency tables: per-part latencies measured on a device, and the additive estimate built on them.

Device side: Python 3.6, no torch.
"""
