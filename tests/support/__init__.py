"""What the tests share, one module per job; tests import it as `from support.ports import free_port`.

pyproject's `pythonpath = ["tests"]` puts this package on the path (no sys.path inserts).

- paths: the project's folders, ../shared and skipping without it
- cli: the real `textwatch` console script in a subprocess
- ports: free loopback TCP ports, single or in pairs
- wait: wait until a condition holds, failing with a clear message after a deadline
- models: darknet cfgs and weights written by the tests; the shipped model
- clips: video files showing known text
- subscriber: a SUB socket on a publish endpoint, every wait bounded
- daemon: real textwatch processes from one config (the whole daemon, or some of its processes)
- rtsp: a real RTSP server (GStreamer under the system Python)
"""
