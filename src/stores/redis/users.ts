/**
 * The Redis store's user tags, cached: a tag is a SHA-256 (`userTag`, the store kit's rule), and
 * a user's sessions are saved and touched often. Two generations keep lookups O(1) at any size.
 *
 * @module
 */
import { userTag } from "../../user_tag.ts";

/** How many user tags each of the two generations of the tag cache holds. */
const TAG_CACHE = 1024;

/** User tags by user id, in two generations (the young one is swapped out when full). */
export class UserTags {
  #tags = new Map<string, string>();
  #oldTags = new Map<string, string>();

  /** The tag of `user` (43 characters of base64url). */
  async of(user: string): Promise<string> {
    let tag = this.#tags.get(user) ?? this.#oldTags.get(user);
    if (tag !== undefined) return tag;
    tag = await userTag(user);
    if (this.#tags.size >= TAG_CACHE) {
      this.#oldTags = this.#tags;
      this.#tags = new Map();
    }
    this.#tags.set(user, tag);
    return tag;
  }
}
