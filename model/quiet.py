"""TensorFlow imported without its start-up noise.

TensorFlow 2.21's native libraries write ``WARNING: All log messages before absl::InitializeLog() ...`` and
``oneDNN custom operations are on ...`` straight to file descriptor 2 while they load, twice, before any
setting can reach them (``TF_CPP_MIN_LOG_LEVEL`` does not: absl has not read it yet; tensorflow/tensorflow#79029).
So the first import runs with descriptor 2 pointed at a temporary file; afterwards what was written there is
replayed to the real stderr less those lines, so nothing else said meanwhile (another thread's log line, an import
error) is lost.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import threading

# the lines TensorFlow's native start-up writes and nobody acts on (any other line is replayed)
NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)"
                   r"|[IW]\d{4} [\d:. ]+\d+ (port|cpu_feature_guard|cuda_\w+|gpu_device)\.cc:\d+\]"
                   r"|To enable the following instructions:"
                   r"|WARNING: TensorFlow was built without)")
_lock = threading.Lock()
_done = False


def _filtered(raw: bytes) -> str:
    return "".join(line for line in raw.decode("utf-8", "replace").splitlines(keepends=True)
                   if not NOISE.match(line))


def import_tensorflow() -> None:
    """Import TensorFlow (and Keras, which loads it) once per process with the native start-up lines dropped.
    Call before the first ``import keras`` / ``import tensorflow``; later calls return at once."""
    global _done
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # what TensorFlow does honour, once loaded
    with _lock:
        if _done or "tensorflow" in sys.modules:
            _done = True
            return
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with tempfile.TemporaryFile() as sink:
                os.dup2(sink.fileno(), 2)
                try:
                    import keras  # noqa: F401, PLC0415 - Keras loads TensorFlow as its backend
                finally:
                    sys.stderr.flush()
                    os.dup2(saved, 2)
                    sink.seek(0)
                    rest = _filtered(sink.read())
                    if rest:
                        sys.stderr.write(rest)
                        sys.stderr.flush()
        finally:
            os.close(saved)
        _done = True


__all__ = ["import_tensorflow"]
