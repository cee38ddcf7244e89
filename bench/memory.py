"""Cost as the work grows: memory and speed of a training step vs input length.

  python bench/memory.py [--lengths 128 256 ...] [--variants vanilla,R,...]
      [--rss_cap_gib 16] [--step_cap_s 300] [--note TEXT] [--out DIR]
  python bench/memory.py --decode [--contexts 512 1024 2048 4096]

Training (the default): every (variant, length) runs in a process of its own
(`memory.py --one VARIANT LENGTH`), so that peaks do not mix. The child builds
speed.py's Model (T5.1.1-small dims, batch 4, targets 16, float32, Adafactor:
what the stock CLI's training step runs), reads the bytes of its variables off
the graph (param_bytes: the model's variables, Fix's untrained table included;
optimizer_bytes: Adafactor's slots `_slot_vr`, `_slot_vc`, `_slot_v`),
initialises them and runs 1 + --steps training steps; steps_per_sec is over the
steps after the first, and peak_rss_bytes is the child's peak resident memory
(its ru_maxrss, as wait4 reports it: the whole process, TensorFlow's runtime,
the graph, variables and activations).

The parent watches each child: it polls its VmRSS in /proc every 0.05 s and
kills it above --rss_cap_gib (status `oom`: the machine has 24 GB and other jobs
need the rest; a child that dies of an allocation failure, or of a SIGKILL it
was not sent, is `oom` as well), and kills it when one training step runs past
--step_cap_s or building and initialising it past --build_cap_s (status
`too_slow`). A variant stopped at one length is not run at the longer ones: those
rows carry the same status and a note. mesh-tensorflow's own Synthesizer
(stock_R) hard-codes length 512, so its longer rows are `unsupported`.

Rows already in --out are kept and skipped, so a long run can stop and go on
(--redo oom,too_slow runs rows with those statuses again). Tables, plot and
memory.json are rewritten after every row.

--decode: greedy decoding of the decoder-only LM vs context length, with
decode.py (tokens/s, decode-state bytes per layer), one guarded process per
context (per variant if the context's process does not finish).
"""

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time

import numpy as np

import benchlib
from benchlib import GIB, SIZE, slope
from speed import Model, release_cannot
import decode

COLUMNS = ["length", "variant", "peak_rss_bytes", "param_bytes",
           "optimizer_bytes", "steps_per_sec", "status"]
DECODE_COLUMNS = ["context", "variant", "tokens_per_sec", "min", "max",
                  "states_per_layer", "state_bytes_per_layer", "params",
                  "peak_rss_bytes", "status"]
VARIANTS = ["vanilla", "R", "Fix", "FR", "D", "FD", "R+V", "D+V", "stock_R",
            "LightConv"]
# --tiny: the dims the tests' small runs use, and a 64-token vocabulary
TINY_BINDINGS = ["d_model = 32", "d_ff = 64", "num_heads = 2", "d_kv = 16",
                 "num_layers = 2"]
TINY_VOCAB = 64
STOPS = ("oom", "too_slow")  # a longer length would stop the same way
EVENT = "@@memory "
POLL_S = 0.05
MEMORY_HINTS = ("ResourceExhausted", "bad_alloc", "MemoryError", "OOM when",
                "Cannot allocate memory", "out of memory")


def emit(event, **fields):
  print(EVENT + json.dumps(dict(fields, event=event)), flush=True)


def variable_bytes(variables):
  """(parameter bytes, optimizer-slot bytes) of {name: (shape, value size)}."""
  sizes = {"param": 0, "slot": 0}
  for name, (shape, size) in variables.items():
    sizes["slot" if "_slot_" in name else "param"] += int(np.prod(shape)) * size
  return sizes["param"], sizes["slot"]


def one(args):
  """The child: one variant at one length, reporting as EVENT lines."""
  import synth_mtf  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  variant, length = args.one[0], int(args.one[1])
  model = Model(variant, length, args.target_length, args.batch,
                extra_bindings=TINY_BINDINGS if args.tiny else (),
                vocab=TINY_VOCAB if args.tiny else SIZE["vocab"],
                start=False)
  param_bytes, optimizer_bytes = variable_bytes(model.variables)
  emit("built", param_bytes=param_bytes, optimizer_bytes=optimizer_bytes)
  model.start()
  seconds = []
  for i in range(1 + args.steps):
    emit("step", i=i)
    t0 = time.perf_counter()
    model.sess.run([model.train_op, model.loss])
    seconds.append(time.perf_counter() - t0)
  timed = seconds[1:] or seconds
  emit("done", step_seconds=[round(s, 3) for s in seconds],
       steps_per_sec=len(timed) / sum(timed),
       peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _vm(pid):
  """(VmRSS, VmHWM) of a live process in bytes; zeros once it is gone."""
  got = {"VmRSS": 0, "VmHWM": 0}
  try:
    with open("/proc/%d/status" % pid) as f:
      for line in f:
        key = line.split(":")[0]
        if key in got:
          got[key] = int(line.split()[1]) * 1024
  except (OSError, ValueError):
    pass
  return got["VmRSS"], got["VmHWM"]


def _reaped(proc):
  """Whether proc has exited; if so sets its returncode and maxrss (its own
  peak resident bytes, which Popen's wait would not give)."""
  pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
  if pid == 0:
    return False
  proc.returncode = os.waitstatus_to_exitcode(status)
  proc.maxrss = usage.ru_maxrss * 1024
  return True


def guarded(cmd, log_path, rss_cap, caps, as_slack=8 * GIB):
  """Run cmd, killing it above rss_cap bytes of VmRSS or when a phase outlasts
  its cap. caps: {phase: seconds}, the first phase from the launch, another
  from each EVENT line of its name the child prints, each lasting its cap.
  Returns {status, note, events (the last of each name), peak_rss_bytes}."""
  os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
  limit = int(rss_cap + as_slack)

  def backstop():  # allocations fail (and the child dies) far above the cap
    if as_slack:
      resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

  events = {}
  phase = [next(iter(caps)), time.monotonic()]
  with open(log_path, "w") as log:
    log.write("$ %s\n" % " ".join(cmd))
    log.flush()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                            preexec_fn=backstop, cwd=benchlib.ROOT)

    def read():
      for line in proc.stdout:
        log.write(line)
        log.flush()
        if line.startswith(EVENT):
          event = json.loads(line[len(EVENT):])
          events[event["event"]] = event
          if event["event"] in caps:
            phase[:] = [event["event"], time.monotonic()]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    status, note, peak = None, "", 0
    while not _reaped(proc):
      rss, hwm = _vm(proc.pid)
      peak = max(peak, hwm, rss)
      waited = time.monotonic() - phase[1]
      if rss > rss_cap:
        status, note = "oom", "killed at %.2f GiB resident (cap %.2f GiB)" % (
            rss / GIB, rss_cap / GIB)
      elif waited > caps[phase[0]]:
        status, note = "too_slow", "killed after %.0f s of %s (cap %d s)" % (
            waited, phase[0], caps[phase[0]])
      if status:
        proc.kill()
        while not _reaped(proc):
          time.sleep(POLL_S)
        break
      time.sleep(POLL_S)
    reader.join(timeout=10)
  peak = max(peak, proc.maxrss)
  if status is None:
    if proc.returncode == 0:
      status = "ok"
    else:
      with open(log_path) as f:
        tail = f.read()[-20000:]
      if proc.returncode == -signal.SIGKILL or any(h in tail
                                                   for h in MEMORY_HINTS):
        status = "oom"
        note = "died of an allocation failure or a SIGKILL (exit %d)" % (
            proc.returncode)
      else:
        status, note = "error", "exit %d, see %s" % (proc.returncode, log_path)
  if note:
    print("  %s: %s" % (status, note), flush=True)
  return {"status": status, "note": note, "events": events,
          "peak_rss_bytes": peak}


# --- the files: rows and the runs that measured them --------------------------

def load(path):
  old = benchlib.read_json(path, {"stamps": [], "rows": []})
  return old["stamps"], old["rows"]


def save(path, stamps, rows):
  used = {r["stamp"] for r in rows}
  benchlib.write_json(path, {"stamps": [s for s in stamps if s["date"] in used],
                             "rows": rows})


def fmt(value, scale=1.0, digits=2):
  return "" if value in (None, "") else "%.*f" % (digits, value / scale)


def stamp_lines(stamps, rows, key):
  lines = []
  for st in stamps:
    mine = sorted({r[key] for r in rows if r["stamp"] == st["date"]})
    if mine:
      lines.append("- %s %s: `%s` at commit %s, %s, on %s. %s\n" % (
          key, ", ".join(map(str, mine)), st["command"], st["commit"],
          st["date"], st["machine"], st["settings"]))
  return "".join(lines)


# --- training ---------------------------------------------------------------

def advice(rows, cap_gib):
  """The summary table and the 'which variant' paragraph, from the rows."""
  ok = [r for r in rows if r["status"] == "ok"]
  variants = list(dict.fromkeys(r["variant"] for r in rows))
  tried = sorted({r["length"] for r in rows})
  table = ("| variant | longest length that trains (of %s, under the cap) | peak memory at "
           "2048, GiB | parameters at 2048, MiB | steps/s at 2048 | stops at "
           "|\n|---|---|---|---|---|---|\n" % ", ".join(map(str, tried)))
  longest = {}
  for v in variants:
    mine = {r["length"]: r for r in rows if r["variant"] == v}
    good = [n for n, r in mine.items() if r["status"] == "ok"]
    longest[v] = max(good) if good else None
    stop = min((n for n, r in mine.items() if r["status"] != "ok"),
               default=None)
    at = mine.get(2048, {})
    reach = "none" if longest[v] is None else str(longest[v])
    if longest[v] and stop is None:  # nothing stopped it (yet)
      reach += (" (the longest run)" if longest[v] == tried[-1] else
                " (longer not run yet)")
    table += "| %s | %s | %s | %s | %s | %s |\n" % (
        v, reach, fmt(at.get("peak_rss_bytes") if at.get(
            "status") == "ok" else None, GIB), fmt(at.get("param_bytes"),
                                                   2 ** 20, 0),
        fmt(at.get("steps_per_sec") or None, 1, 4),
        "" if stop is None else "%d (%s)" % (stop, mine[stop]["status"]))
  facts = []
  if ok:
    top = max(longest.values(), key=lambda n: n or 0)
    facts.append("Measured (peak resident memory capped at %g GiB, what a 24 "
                  "GB machine leaves one job): the longest length that trained"
                  " is %d, reached by %s." % (
                      cap_gib, top, ", ".join(v for v in variants
                                              if longest[v] == top)))
    at = {r["variant"]: r for r in ok if r["length"] == top}
    if len(at) > 1:
      order = sorted(at, key=lambda v: at[v]["peak_rss_bytes"])
      facts.append("At %d the smallest peak is %s's (%.2f GiB), the largest "
                   "%s's (%.2f GiB); the fastest step is %s's (%.4f steps/s), "
                   "the slowest %s's (%.4f)." % (
                       top, order[0], at[order[0]]["peak_rss_bytes"] / GIB,
                       order[-1], at[order[-1]]["peak_rss_bytes"] / GIB,
                       *_extremes(at)))
  return table, " ".join(facts)


def _extremes(at):
  order = sorted(at, key=lambda v: -at[v]["steps_per_sec"])
  return (order[0], at[order[0]]["steps_per_sec"], order[-1],
          at[order[-1]]["steps_per_sec"])


WHEN = (
    "By construction (synth_mtf/synthesizers.py and the FLOP model in "
    "speed.py): every variant here but LightConv still forms the heads x N x N "
    "attention weights of each layer (a Synthesizer replaces how the logits "
    "are made, Q K^T, not the N x N weights), so activation memory and the "
    "weights x values matmul grow with N^2 for all of them; what differs is "
    "the rest. R, Fix and R+V carry a heads x N x N table per self-attention "
    "layer, so their parameters grow with N^2 too, and R and R+V also hold "
    "its gradient (Adafactor factors the table's slots, which stay small). FR "
    "keeps its table at 2 x heads x N x k; D's second projection grows with "
    "N and FD's with sqrt(N), though FD's factorized logits take more "
    "activation memory than D's in this implementation (see the rows). "
    "Vanilla's parameters do not depend on N. LightConv (a local window of 7) "
    "is the only one whose FLOPs are linear in N, and it is not global "
    "attention. For long inputs on a fixed memory budget: FR and D (and Fix, "
    "where a table fixed at initialisation will do) reach furthest among the "
    "global variants; R and R+V pay N^2 twice, vanilla and the +V mixtures "
    "pay for Q and K on top of the N^2 weights; LightConv when the task is "
    "local.")


def write(out, stamps, rows, cap_gib):
  rows.sort(key=lambda r: (r["length"], VARIANTS.index(r["variant"])
                           if r["variant"] in VARIANTS else 99))
  save(os.path.join(out, "memory.json"), stamps, rows)
  benchlib.write_csv(os.path.join(out, "memory.csv"), COLUMNS, rows)
  used = [st for st in stamps if any(r["stamp"] == st["date"] for r in rows)]
  table, facts = advice(rows, cap_gib)
  variants = list(dict.fromkeys(r["variant"] for r in rows))
  ok = [r for r in rows if r["status"] == "ok"]
  mem = {v: [(r["length"], r["peak_rss_bytes"] / GIB) for r in ok
             if r["variant"] == v] for v in variants}
  step = {v: [(r["length"], 1.0 / r["steps_per_sec"]) for r in ok
              if r["variant"] == v] for v in variants}
  with open(os.path.join(out, "memory.md"), "w") as f:
    f.write("# Cost vs input length: a training step's memory and speed, "
            "T5.1.1-small dims, batch %s, targets %s, float32, Adafactor\n\n"
            % (used[-1]["batch"], used[-1]["target_length"]))
    f.write("Runs (each measured the lengths it lists):\n\n")
    f.write(stamp_lines(used, rows, "length"))
    f.write(
        "\nEach (variant, length) ran in its own process. peak_rss_bytes: the "
        "process's peak resident memory (ru_maxrss), TensorFlow's runtime and "
        "the graph included, over the build and all steps; param_bytes: the "
        "model's variables (Fix's fixed table included); optimizer_bytes: "
        "Adafactor's slot variables; steps_per_sec: the steps after the first. "
        "status: ok; oom (resident memory passed the cap, or the process died "
        "of an allocation failure; its peak is where it was stopped, a lower "
        "bound); too_slow (a step, or the build, passed its"
        " cap); unsupported (stock_R, the release's layer, hard-codes 512); a "
        "length after an oom or too_slow is not run and says so in its note "
        "(memory.json). Steps/s are noisy where the run's note says another "
        "job shared the CPU.\n\n")
    f.write("## Summary: the longest length that trains on a 24 GB machine, "
            "and memory at 2048\n\n" + table + "\n")
    f.write("## When to pick which variant for long inputs\n\n")
    f.write((facts + "\n\n" if facts else "") + WHEN + "\n\n")
    f.write("## Fitted slopes (log-log over the `ok` lengths)\n\n"
            "Peak memory includes a constant (runtime, graph, the length-free "
            "parameters), so its slope over short lengths understates the "
            "asymptotic one.\n\n"
            "| variant | memory slope | step-time slope | ok lengths |\n"
            "|---|---|---|---|\n")
    for v in variants:
      km, ks = slope(mem[v]), slope(step[v])
      f.write("| %s | %s | %s | %s |\n" % (
          v, fmt(km), fmt(ks), ", ".join(str(n) for n, _ in sorted(mem[v]))))
    f.write("\n## All rows\n\n| length | variant | peak RSS, GiB | params, "
            "MiB | optimizer, MiB | steps/s | s/step | status | note |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
      sps = r["steps_per_sec"] or None
      f.write("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n" % (
          r["length"], r["variant"], fmt(r["peak_rss_bytes"] or None, GIB),
          fmt(r["param_bytes"], 2 ** 20, 1),
          fmt(r["optimizer_bytes"], 2 ** 20, 1), fmt(sps, 1, 4),
          fmt(sps and 1.0 / sps, 1, 2), r["status"], r.get("note", "")))
  benchlib.loglog(
      os.path.join(out, "memory.png"),
      [("peak resident memory, GiB", mem), ("seconds per training step", step)],
      "input length", "training step vs length (T5.1.1-small dims, batch %s); "
      "fitted log-log slopes in the legend" % used[-1]["batch"], used)


def settings(args):
  return ("Caps: %g GiB resident, %d s a step, %d s to build; %d timed steps "
          "after one.%s%s" % (args.rss_cap_gib, args.step_cap_s,
                              args.build_cap_s, args.steps,
                              " Tiny dims (--tiny)." if args.tiny else "",
                              " " + args.note if args.note else ""))


def train(args):
  os.makedirs(args.out, exist_ok=True)
  stamps, rows = load(os.path.join(args.out, "memory.json"))
  mine = dict(benchlib.stamp(), batch=args.batch,
              target_length=args.target_length, tiny=args.tiny,
              settings=settings(args))
  for st in stamps:
    if (st["batch"], st["target_length"], st["tiny"]) != (
        args.batch, args.target_length, args.tiny):
      sys.exit("%s holds rows of another setting (batch %s, targets %s, tiny "
               "%s): use another --out" % (args.out, st["batch"],
                                           st["target_length"], st["tiny"]))
  stamps.append(mine)
  redo = set(filter(None, args.redo.split(",")))
  cap = args.rss_cap_gib * GIB
  for length in args.lengths:
    for v in args.variants:
      old = next((r for r in rows if (r["length"], r["variant"]) == (length, v)),
                 None)
      if old and old["status"] not in redo:
        print("%s at %d: already measured (%s), skipped" % (v, length,
                                                            old["status"]))
        continue
      row = dict(length=length, variant=v, peak_rss_bytes="", param_bytes="",
                 optimizer_bytes="", steps_per_sec="", stamp=mine["date"],
                 note="")
      shorter = [r for r in rows if r["variant"] == v and r["length"] < length
                 and r["status"] in STOPS]
      why = release_cannot(v, length)
      if why:
        row.update(status="unsupported", note=why)
      elif shorter:
        first = min(shorter, key=lambda r: r["length"])
        row.update(status=first["status"], note="not run: %s at %d" % (
            first["status"], first["length"]))
      else:
        print("%s at %d" % (v, length), flush=True)
        cmd = [sys.executable, os.path.abspath(__file__), "--one", v,
               str(length), "--batch", str(args.batch), "--target_length",
               str(args.target_length), "--steps", str(args.steps)]
        got = guarded(cmd + (["--tiny"] if args.tiny else []),
                      os.path.join(args.log_dir, "%s_%d.log" % (v, length)),
                      cap, {"build": args.build_cap_s,
                            "step": args.step_cap_s},
                      as_slack=args.as_slack_gib * GIB)
        built, done = got["events"].get("built", {}), got["events"].get("done")
        row.update(status=got["status"], note=got["note"],
                   peak_rss_bytes=got["peak_rss_bytes"],
                   param_bytes=built.get("param_bytes", ""),
                   optimizer_bytes=built.get("optimizer_bytes", ""))
        if done and got["status"] == "ok":
          row.update(steps_per_sec=round(done["steps_per_sec"], 5),
                     step_seconds=done["step_seconds"])
        print("  %s" % {k: row[k] for k in COLUMNS}, flush=True)
      rows = [r for r in rows if (r["length"], r["variant"]) != (length, v)]
      rows.append(row)
      write(args.out, stamps, rows, args.rss_cap_gib)
  if rows:  # also when all was measured before: the tables in this version
    write(args.out, stamps, rows, args.rss_cap_gib)
  print("wrote %s/memory.{csv,md,json,png}" % args.out)


# --- decoding vs context ----------------------------------------------------

def decode_context(args):
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "decode_context.json")
  stamps, rows = load(path)
  mine = dict(benchlib.stamp(), settings="Batch %d, vocabulary %d, %d steps a timing, "
              "%d rounds; cap %g GiB resident, %d s a process.%s" % (
                  args.decode_batch, args.decode_vocab, args.decode_steps,
                  args.decode_reps, args.rss_cap_gib, args.decode_cap_s,
                  " " + args.note if args.note else ""))
  stamps.append(mine)
  variants = args.decode_variants.split(",")

  def run(context, names, tag):
    work = os.path.join(args.log_dir, "decode", "ctx_%d%s" % (context, tag))
    cmd = [sys.executable, os.path.join(benchlib.HERE, "decode.py"), "--context",
           str(context), "--batch", str(args.decode_batch), "--vocab",
           str(args.decode_vocab), "--steps", str(args.decode_steps), "--reps",
           str(args.decode_reps), "--variants", ",".join(names), "--out", work]
    got = guarded(cmd, work + ".log", args.rss_cap_gib * GIB,
                  {"decoding": args.decode_cap_s},
                  as_slack=args.as_slack_gib * GIB)
    if got["status"] != "ok":
      return {v: dict(context=context, variant=v, status=got["status"],
                      note=got["note"], peak_rss_bytes=got["peak_rss_bytes"])
              for v in names}
    with open(os.path.join(work, "decode.json")) as f:
      measured = json.load(f)["rows"]
    return {r["variant"]: dict(r, context=context, status="ok", note=tag and (
        "measured alone"), peak_rss_bytes=got["peak_rss_bytes"])
            for r in measured}

  for context in args.contexts:
    cannot = {v: why for v in variants
              if (why := release_cannot(v, context))}  # not run
    rows = [r for r in rows if not (r["context"] == context and
                                    r["variant"] in cannot)]
    rows += [dict(context=context, variant=v, status="unsupported", note=why,
                  peak_rss_bytes="", stamp=mine["date"])
             for v, why in cannot.items()]
    todo = [v for v in variants if not any(
        (r["context"], r["variant"]) == (context, v) and r["status"] in (
            "ok", "unsupported") for r in rows)]
    if not todo:
      print("context %d: already measured, skipped" % context)
      continue
    print("decoding at context %d: %s" % (context, ",".join(todo)), flush=True)
    got = run(context, todo, "")
    if len(todo) > 1 and any(r["status"] != "ok" for r in got.values()):
      got = {}  # each variant alone: the others' memory no longer counts
      for v in todo:
        got.update(run(context, [v], "_" + v))
    for r in got.values():
      r["stamp"] = mine["date"]
    rows = [r for r in rows if not (r["context"] == context and
                                    r["variant"] in got)] + list(got.values())
    rows.sort(key=lambda r: (r["context"], variants.index(r["variant"])
                             if r["variant"] in variants else 99))
    save(path, stamps, rows)
    write_decode(args.out, stamps, rows)
  print("wrote %s/decode_context.{csv,md,json,png}" % args.out)


def write_decode(out, stamps, rows):
  benchlib.write_csv(os.path.join(out, "decode_context.csv"), DECODE_COLUMNS, rows)
  used = [st for st in stamps if any(r["stamp"] == st["date"] for r in rows)]
  with open(os.path.join(out, "decode_context.md"), "w") as f:
    f.write("# Greedy decoding vs context length, decoder-only LM, T5.1.1-small"
            " dims, float32 (bench/decode.py)\n\n")
    f.write(stamp_lines(used, rows, "context"))
    f.write("\ntokens/s: median of the rounds (min, max), each round batch x "
            "steps tokens over the whole context; state bytes per layer: the "
            "incremental caches a layer keeps; peak RSS: the decoding "
            "process's (all the variants it ran, unless the note says alone)."
            "\n\n| context | variant | tokens/s | min | max | state MiB per "
            "layer | peak RSS, GiB | status | note |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
      f.write("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n" % (
          r["context"], r["variant"], r.get("tokens_per_sec", ""),
          r.get("min", ""), r.get("max", ""),
          fmt(r.get("state_bytes_per_layer"), 2 ** 20),
          fmt(r["peak_rss_bytes"] or None, GIB), r["status"],
          r.get("note") or ""))
  ok = [r for r in rows if r["status"] == "ok"]
  names = list(dict.fromkeys(r["variant"] for r in ok))
  if ok:
    benchlib.loglog(os.path.join(out, "decode_context.png"), [
        (ylabel, {v: [(r["context"], r[key] * scale) for r in ok
                      if r["variant"] == v] for v in names})
        for ylabel, key, scale in [("tokens/s", "tokens_per_sec", 1.0), (
            "decode state per layer, MiB", "state_bytes_per_layer",
            2.0 ** -20)]], "context length", "greedy decoding vs context",
        used)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--lengths", type=int, nargs="+",
                 default=[128, 256, 512, 1024, 2048, 4096, 8192])
  p.add_argument("--variants", default=",".join(VARIANTS))
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--target_length", type=int, default=16)
  p.add_argument("--steps", type=int, default=2,
                 help="timed training steps after the first")
  p.add_argument("--tiny", action="store_true",
                 help="tiny dims (%s), vocabulary %d: for tests" % (
                     ", ".join(TINY_BINDINGS), TINY_VOCAB))
  p.add_argument("--rss_cap_gib", type=float, default=16.0)
  p.add_argument("--as_slack_gib", type=float, default=8.0,
                 help="address-space limit of a child above the RSS cap (a "
                 "backstop should polling miss a spike; 0: none)")
  p.add_argument("--step_cap_s", type=int, default=300)
  p.add_argument("--build_cap_s", type=int, default=1200)
  p.add_argument("--redo", default="", help="statuses to measure again, "
                 "e.g. oom,too_slow,error")
  p.add_argument("--note", default="", help="a line for the tables' header, "
                 "e.g. 'measured beside another CPU job'")
  p.add_argument("--out", default=os.path.join(benchlib.RESULTS, "memory"))
  p.add_argument("--log_dir", default=os.path.join(benchlib.ROOT, "runs",
                                                   "memory"))
  p.add_argument("--one", nargs=2, metavar=("VARIANT", "LENGTH"),
                 help="(internal) the child: measure one configuration")
  p.add_argument("--decode", action="store_true",
                 help="decoding vs context length instead of training")
  p.add_argument("--contexts", type=int, nargs="+",
                 default=[512, 1024, 2048, 4096])
  p.add_argument("--decode_variants", default=",".join(
      decode.DEFAULT_VARIANTS))
  p.add_argument("--decode_batch", type=int, default=16)
  p.add_argument("--decode_vocab", type=int, default=SIZE["vocab"])
  p.add_argument("--decode_steps", type=int, default=64)
  p.add_argument("--decode_reps", type=int, default=3)
  p.add_argument("--decode_cap_s", type=int, default=3600)
  args = p.parse_args(argv)
  if args.one:
    return one(args)
  if args.decode:
    return decode_context(args)
  args.variants = args.variants.split(",")
  benchlib.check_variants(p, args.variants, VARIANTS)
  train(args)


if __name__ == "__main__":
  main()
