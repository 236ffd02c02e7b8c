// How busy the machine was: the load average (what `uptime` prints) and the share of the cores
// every process on the machine kept busy (/proc/stat), sampled around each part of a run. The
// benchmark shares its 2 cores with whatever else runs; these figures say how much that was.
import { readFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";

/** One reading. */
export interface MachineSample {
  at: number;
  load: number[];
  /** Jiffies busy and in all, summed over the cores, since boot; undefined off Linux. */
  busy?: number;
  total?: number;
}

/** A part of the run and the machine around it. */
export interface Phase {
  name: string;
  seconds: number;
  /** Load average (1, 5, 15 min) at the start and at the end. */
  loadStart: number[];
  loadEnd: number[];
  /** Cores kept busy by every process on the machine, on average over the phase. */
  busyCores?: number;
}

/** Reads the load average and /proc/stat. */
export function sample(): MachineSample {
  const reading: MachineSample = { at: performance.now(), load: loadavg() };
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!;
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal guest guest_nice
    const idle = fields[3]! + (fields[4] ?? 0);
    const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
    reading.busy = total - idle;
    reading.total = total;
  } catch {
    // Not Linux: the load average alone.
  }
  return reading;
}

/** The phase between two readings. */
export function phase(name: string, start: MachineSample, end: MachineSample): Phase {
  const result: Phase = {
    name,
    seconds: (end.at - start.at) / 1000,
    loadStart: start.load,
    loadEnd: end.load,
  };
  if (start.total !== undefined && end.total !== undefined && end.total > start.total) {
    result.busyCores = ((end.busy! - start.busy!) / (end.total - start.total)) * cpus().length;
  }
  return result;
}
