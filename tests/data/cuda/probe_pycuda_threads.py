"""Which pycuda driver calls a real driver refuses on a thread where no context is current, while another
thread holds the context: the table that the stand-in pycuda in tests/fakes is checked against.

Run on a machine with an NVIDIA GPU and pycuda:  OUT=folder python3 probe_pycuda_threads.py
It prints the table as JSON and writes it to $OUT/probe.json.
"""

import json
import os
import threading

import numpy as np
import pycuda.driver as cuda

cuda.init()
context = cuda.Device(0).retain_primary_context()
context.push()
stream = cuda.Stream()
event = cuda.Event()
host = cuda.pagelocked_empty((16,), np.float32)
device = cuda.mem_alloc(64)
plain = np.zeros(16, np.float32)
OPERATIONS = {
    "Context.get_current": lambda: cuda.Context.get_current(),
    "mem_alloc": lambda: cuda.mem_alloc(64),
    "pagelocked_empty": lambda: cuda.pagelocked_empty((16,), np.float32),
    "Stream()": lambda: cuda.Stream(),
    "Event()": lambda: cuda.Event(),
    "memcpy_htod_async(stream)": lambda: cuda.memcpy_htod_async(device, host, stream),
    "memcpy_dtoh_async(stream)": lambda: cuda.memcpy_dtoh_async(host, device, stream),
    "memcpy_htod(sync)": lambda: cuda.memcpy_htod(device, plain),
    "memcpy_dtoh(sync)": lambda: cuda.memcpy_dtoh(plain, device),
    "event.record(stream)": lambda: event.record(stream),
    "event.synchronize": lambda: event.synchronize(),
    "stream.synchronize": lambda: stream.synchronize(),
    "Context.synchronize": lambda: cuda.Context.synchronize(),
    "Context.pop(empty)": lambda: cuda.Context.pop(),
}
results = {}


def probe() -> None:
    for name, operation in OPERATIONS.items():
        try:
            value = operation()
            results[name] = "ok" + (" (None)" if value is None and name == "Context.get_current" else "")
        except Exception as exc:  # the outcome is the datum
            results[name] = "{}: {}".format(type(exc).__name__, str(exc).splitlines()[0])


worker = threading.Thread(target=probe)
worker.start()
worker.join()
context.pop()
results["driver"] = str(cuda.get_driver_version())
print(json.dumps(results, indent=1))
with open(os.path.join(os.environ.get("OUT", "/tmp"), "probe.json"), "w") as handle:
    json.dump(results, handle, indent=1)
