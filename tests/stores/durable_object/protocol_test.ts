// The operations DurableObjectStore sends its objects (src/stores/durable_object/protocol.ts):
// the object refuses a malformed one with 400 and says why.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { DurableObjectNamespaceLike } from "../../../src/stores/durable_object.ts";
import { randomKey } from "../../conformance/util.ts";
import { record } from "../remote_cases.ts";
import { dispose, objects } from "./objects.ts";

describe("DurableObjectStore's protocol", () => {
  let namespace: DurableObjectNamespaceLike;
  before(async () => {
    ({ namespace } = await objects());
  });
  after(dispose);

  it("the object refuses malformed operations with 400", async () => {
    const stub = namespace.get(namespace.idFromName(randomKey()));
    for (
      const body of [
        "not json",
        "{}",
        '{"op":"save","record":{"data":[]},"expectedVersion":null}',
        '{"op":"load","now":"soon"}',
        '{"op":"drop"}',
        '{"op":"lock","owner":"a","ttlMs":0}',
        '{"op":"unlock"}',
        '{"op":"index","key":1,"token":"t"}',
        '{"op":"unindex","entries":[{"key":"k"}]}',
        `{"op":"save","record":${JSON.stringify(record({}))},"expectedVersion":null,"user":5}`,
      ]
    ) {
      const response = await stub.fetch("https://do/x", { method: "POST", headers: {}, body });
      assert.equal(response.status, 400, body);
      assert.equal(typeof ((await response.json()) as { error: unknown }).error, "string");
    }
  });
});
