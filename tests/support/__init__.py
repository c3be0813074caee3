"""What the tests share, one module per job; tests import it as `from support.ports import free_port`.

pyproject's `pythonpath = ["tests"]` puts this package on the path (no sys.path inserts);
fixtures shared by the kinds of test stay in tests/conftest.py.

- paths: the project's folders, ../shared and skipping without it
- cli: the real `textwatch` console script (and `textwatch status`) in a subprocess
- ports: free loopback TCP ports, single or in neighbouring pairs
- wait: wait until a condition holds, failing with a clear message after a deadline
- models: darknet cfgs and weights written by the tests; constant models; the shipped model
- clips: video files showing known text
- messages: valid bus messages (crop headers, crops, text results)
- subscriber: a SUB socket on a publish endpoint, every wait bounded
- daemon: real textwatch processes from one config (the whole daemon, or some of its processes)
- rtsp: a real RTSP server (GStreamer under the system Python)
- keys: CURVE key pairs made by `textwatch keys generate`
- eval_sets: evaluation sets on disk and `textwatch eval` arguments
"""
