// What the reach Worker (reach_worker.ts) and its test share: the session data, the rich values
// POST /rich stores, and how GET /rich answers them. (A Worker module exports only its handlers.)

/** The session data of the Worker. */
export type Data = {
  user?: string;
  n?: number;
  note?: string;
  since?: Date;
  scores?: Map<string, number>;
  tags?: Set<string>;
  home?: URL;
  big?: bigint;
};

/** The rich values POST /rich stores for a seed. */
export function richFor(seed: number): Required<Pick<Data, "since" | "scores" | "tags" | "home" | "big">> {
  return {
    since: new Date(Date.UTC(2026, 0, 1) + seed * 1000),
    scores: new Map([["a", seed], ["b", -seed]]),
    tags: new Set([`t${seed}`, `u${seed}`]),
    home: new URL(`https://example.com/users/${seed}?tab=a#b`),
    big: BigInt(seed) ** 5n + 1n,
  };
}

/** What GET /rich answers: each value as JSON, or null when it is not of its class. */
export interface RichSeen {
  since: string | null;
  scores: [string, number][] | null;
  tags: string[] | null;
  home: string | null;
  big: string | null;
}

/** The rich values as GET /rich answers them; `richFor(seed)` through this is what it must answer. */
export function describeRich(values: Partial<Data>): RichSeen {
  const { since, scores, tags, home, big } = values;
  return {
    since: since instanceof Date ? since.toISOString() : null,
    scores: scores instanceof Map ? [...scores] : null,
    tags: tags instanceof Set ? [...tags] : null,
    home: home instanceof URL ? home.href : null,
    big: typeof big === "bigint" ? big.toString() : null,
  };
}
