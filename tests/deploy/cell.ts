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
 * A reason to mark the Workers cells `todo`, or `false`. They were marked while requests of one
 * session that overlap in one isolate were answered 500 ("the Worker's code had hung": one
 * request did another's I/O); requests now take turns, each doing its own I/O.
 */
export const HUNG: string | false = false;

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
