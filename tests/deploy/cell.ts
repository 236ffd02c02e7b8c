// What every deployment cell asserts, whatever the runtime and the store.
import assert from "node:assert/strict";
import type { TestContext } from "node:test";
import { describeOutcome, type Outcome } from "./driver.ts";

/** A cell's result: its name, what the driver saw, and notes for the report. */
export interface Cell {
  name: string;
  outcome: Outcome;
  notes: string[];
}

/** The least number of requests of one session the server must have served at once. */
export const LEAST_AT_ONCE = 10;

/**
 * Why the Workers cells are marked `todo` today: requests of one session that overlap in one
 * isolate are answered 500 "The Workers runtime canceled this request because it detected that
 * your Worker's code had hung". Remove the mark once the core serializes them without a request
 * waiting on another request's I/O.
 */
export const HUNG: string | false =
  "requests of one session in one isolate answer 500: the Worker's code had hung (one request does another's I/O)";

/**
 * Prints the cell's numbers and asserts: no 500 (no 5xx at all but a 503 the store promises), the
 * server served at least LEAST_AT_ONCE requests of one session at once (a client pool that never
 * gets there would test nothing), and nothing the checks found.
 */
export function assertCell(t: TestContext, cell: Cell): void {
  const line = describeOutcome(cell.name, cell.outcome);
  t.diagnostic(line);
  for (const note of cell.notes) t.diagnostic(note);
  if (process.env.DEPLOY_VERBOSE === "1") console.log(line);
  const o = cell.outcome;
  const hung = o.history.filter((op) => /had hung/.test(op.error ?? "")).length;
  assert.equal(o.serverErrors, 0, `${o.serverErrors} answers of 500 or more (${hung} "code had hung")`);
  assert.ok(
    o.mostAtOnce >= LEAST_AT_ONCE,
    `the server served at most ${o.mostAtOnce} requests of one session at once, fewer than ${LEAST_AT_ONCE}`,
  );
  assert.deepEqual(o.anomalies, []);
}
