"""dfseg-bench's machinery: measurement protocol, machine state, model benchmarks, latency tables,
their validation and device bundles.  Device side: Python 3.6, no torch (see each module)."""
