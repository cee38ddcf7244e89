"""Claims: one process at a time owns a sweep's run (or its tables), across
processes and machines, through a small file next to what it guards.

A claim is created exclusively (O_EXCL on a local disk; elsewhere, e.g. gs://,
tf.io.gfile's rename without overwrite, then read back: GCS offers gfile no
atomic create, so two machines starting within the same second could both
believe they won; the read-back makes that window small). It records host,
pid, the pid's start time and the trainer the owner started. A claim whose
owner process is gone (same host, pid dead or reused) is taken over, and its
leftover trainer, if still running, stopped. Every write here goes through
tf.io.gfile, so an out_dir on gs:// works as a local one does.
"""

import json
import os
import signal
import socket
import time
import uuid


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def write_atomic(path, data):
  """Write str/bytes to path through a temporary file and a rename: readers
  see the old file or the new one, never half of one."""
  gfile = _gfile()
  tmp = _temporary(path, uuid.uuid4().hex[:8])
  with gfile.GFile(tmp, "wb" if isinstance(data, bytes) else "w") as f:
    f.write(data)
  gfile.rename(tmp, path, overwrite=True)


def _temporary(path, token):
  # not path + suffix: TF's ram:// filesystem takes a file for existing
  # when another name starts with it
  head, tail = os.path.split(path)
  return os.path.join(head, ".tmp-%s-%s" % (token, tail))


def read_json(path):
  """The JSON in path, or None when absent or not (yet) complete."""
  gfile = _gfile()
  try:
    with gfile.GFile(path) as f:
      return json.loads(f.read())
  except Exception:  # pylint: disable=broad-except  (absent, half-written)
    return None


def process_start(pid):
  """The process's start time (Linux /proc), to tell a reused pid; None when
  the process does not exist."""
  try:
    with open("/proc/%d/stat" % pid) as f:
      fields = f.read().rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]  # a zombie is gone
  except (OSError, IndexError):
    try:
      os.kill(pid, 0)
    except ProcessLookupError:
      return None
    except PermissionError:
      pass
    return "?"  # alive, start time unknown (not Linux)


def me():
  return {"host": socket.gethostname(), "pid": os.getpid(),
          "pid_start": process_start(os.getpid()),
          "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
          "token": uuid.uuid4().hex}


def _alive(host, pid, start):
  """Whether the process runs (True), is gone (False), or cannot be seen
  from here, another host (None)."""
  if host != socket.gethostname():
    return None
  now = process_start(pid) if pid else None
  return now is not None and (start is None or now in (start, "?"))


def gone(holder):
  """Whether the holder of a claim is known to be gone."""
  return _alive(holder.get("host"), holder.get("pid"),
                holder.get("pid_start")) is False


def describe(holder):
  return "host %s pid %s since %s" % (holder.get("host"), holder.get("pid"),
                                       holder.get("started"))


def _create(path, record):
  """Create path holding record, only if it does not exist: True if we did."""
  text = json.dumps(record, indent=1)
  if "://" not in path:
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, "w") as f:
      f.write(text)
    return True
  gfile = _gfile()
  tmp = _temporary(path, record["token"])
  with gfile.GFile(tmp, "w") as f:
    f.write(text)
  try:
    gfile.rename(tmp, path, overwrite=False)
  except Exception:  # pylint: disable=broad-except  (AlreadyExistsError)
    gfile.remove(tmp)
    return False
  return (read_json(path) or {}).get("token") == record["token"]


def take(path, log):
  """Claim path: our record, or None while a live process (or one on
  another host) holds it. A claim whose owner is gone is taken over (its
  leftover trainer stopped) and `log` says so."""
  for attempt in range(50):
    mine = me()
    if _create(path, mine):
      return mine
    holder = read_json(path)
    if holder is None and attempt < 30:  # being written, or just released
      time.sleep(0.1)
      continue
    if holder is None:  # still unreadable: its owner died writing it
      log("[sweep] %s: unreadable for 3 s; taking it over" % path)
      _gfile().remove(path)
      continue
    if not gone(holder):
      return None
    stopped = stop_trainer(holder)
    log("[sweep] %s: its owner (%s) is gone; taking it over%s" % (
        path, describe(holder), "; stopped its leftover trainer (pid %d)"
        % stopped if stopped else ""))
    if read_json(path) == holder:  # not taken over by another meanwhile
      _gfile().remove(path)
  raise RuntimeError("could not claim %s: it changes hands too fast" % path)


def wait(path, log, poll=1.0):
  """take(), waiting while another process holds it."""
  while True:
    mine = take(path, log)
    if mine:
      return mine
    time.sleep(poll)


def update(path, record):
  """Rewrite our claim (e.g. with the trainer's pid)."""
  write_atomic(path, json.dumps(record, indent=1))


def release(path, record):
  """Remove the claim if it is still ours."""
  if (read_json(path) or {}).get("token") == record["token"]:
    _gfile().remove(path)


def stop_trainer(holder):
  """Kill the trainer a gone owner left running (its own process group);
  its pid, or None."""
  pid = holder.get("trainer_pid")
  if not pid or _alive(holder.get("host"), pid,
                       holder.get("trainer_start")) is not True:
    return None
  try:
    os.killpg(pid, signal.SIGKILL)
  except ProcessLookupError:
    return None
  return pid
