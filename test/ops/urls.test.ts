/** maskPassword (src/ops/urls.ts): what an error may show of a URL the user gave. */
import { expect, test } from "bun:test";
import { maskPassword } from "../../src/ops/urls.ts";
test("user info is masked up to the last @, whatever it holds, with or without a scheme; a user name alone as a token; each URL of a list", () => {
  for (const [a, b] of [
    ["https://s3cr3tTOKEN@127.0.0.1:1", "https://***@127.0.0.1:1"],
    ["https://u:s3cr3t TOKEN@127.0.0.1:1", "https://u:***@127.0.0.1:1"],
    ["https://u:s3/cr3t@127.0.0.1:1", "https://u:***@127.0.0.1:1"],
    ["u:s3cr3t@127.0.0.1:1", "u:***@127.0.0.1:1"],
    ["http://bob:s3cr3t@h:3000", "http://bob:***@h:3000"],
    ["http://a:1,http://u:p@b:2", "http://a:1,http://u:***@b:2"],
    ["http://a:1, https://u:p@b:2", "http://a:1, https://u:***@b:2"],
    // A comma inside the user info is not a list's.
    ["http://tok,en@127.0.0.1:1", "http://***@127.0.0.1:1"],
    ["http://user:se,cret@127.0.0.1:1", "http://user:***@127.0.0.1:1"],
    // A list with no scheme is one part: nothing before its last @ is shown.
    ["secrettok@h1:3000,tok2@h2:3000", "***@h2:3000"],
    ["http://u:p@h:1,tok@h2:2", "http://u:***@h2:2"],
    ["http://h:3000", "http://h:3000"],
  ]) expect(maskPassword(a!)).toBe(b!);
});
