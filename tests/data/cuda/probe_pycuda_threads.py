"""Run on a machine with an NVIDIA GPU and pycuda (OUT=folder python3 probe_pycuda_threads.py).

Which pycuda driver calls a real driver refuses on a thread where no context is current, while another
thread holds the context: the table the stand-in pycuda in tests/fakes is checked against."""
import json, os, threading
import numpy as np
import pycuda.driver as cuda

cuda.init()
ctx = cuda.Device(0).retain_primary_context()
ctx.push()
stream = cuda.Stream(); ev = cuda.Event(); host = cuda.pagelocked_empty((16,), np.float32); dev = cuda.mem_alloc(64)
plain = np.zeros(16, np.float32)
ops = {
    "Context.get_current": lambda: cuda.Context.get_current(),
    "mem_alloc": lambda: cuda.mem_alloc(64),
    "pagelocked_empty": lambda: cuda.pagelocked_empty((16,), np.float32),
    "Stream()": lambda: cuda.Stream(),
    "Event()": lambda: cuda.Event(),
    "memcpy_htod_async(stream)": lambda: cuda.memcpy_htod_async(dev, host, stream),
    "memcpy_dtoh_async(stream)": lambda: cuda.memcpy_dtoh_async(host, dev, stream),
    "memcpy_htod(sync)": lambda: cuda.memcpy_htod(dev, plain),
    "memcpy_dtoh(sync)": lambda: cuda.memcpy_dtoh(plain, dev),
    "event.record(stream)": lambda: ev.record(stream),
    "event.synchronize": lambda: ev.synchronize(),
    "stream.synchronize": lambda: stream.synchronize(),
    "Context.synchronize": lambda: cuda.Context.synchronize(),
    "Context.pop(empty)": lambda: cuda.Context.pop(),
}
results = {}
def probe():
    for name, op in ops.items():
        try:
            value = op()
            results[name] = "ok" + (" (None)" if value is None and name == "Context.get_current" else "")
        except Exception as exc:
            results[name] = "{}: {}".format(type(exc).__name__, str(exc).splitlines()[0])
t = threading.Thread(target=probe); t.start(); t.join()
ctx.pop()
results["driver"] = str(cuda.get_driver_version())
print(json.dumps(results, indent=1))
json.dump(results, open(os.path.join(os.environ.get("OUT", "/tmp"), "probe.json"), "w"), indent=1)
