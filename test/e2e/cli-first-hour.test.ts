/**
 * The first hour with the compiled binary (issue 10): the seeds' README commands
 * as printed (single-dash flags, huton's -bindPort and host:port peers), every
 * refusal one line with exit 2 naming the flag as typed, units in --ttl and in
 * --help, help without colours on a pipe, and `put k -` from stdin. The binary is
 * built once for the file with the real build script.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TARGETS, build, type TargetName } from "../../scripts/build.ts";
import { cleanEnv, eventually, run, startNode, type NodeProcess } from "../support/proc.ts";
import { deadListener } from "../support/raw-http.ts";

const hostTarget = `${process.platform === "win32" ? "windows" : process.platform}-${process.arch}` as TargetName;
if (!(hostTarget in TARGETS)) throw new Error(`no release target for this host (${hostTarget})`);

let dir: string;
let bin: string;
let node: NodeProcess;
const f = (name: string) => join(dir, name);

beforeAll(async () => {
  for (const tool of ["curl", "openssl"]) {
    if (!Bun.which(tool)) throw new Error(`these tests need the ${tool} command (the seeds' README uses curl; openssl makes throwaway PEM files)`);
  }
  dir = mkdtempSync(join(tmpdir(), "makhzen-first-hour-"));
  bin = await build(hostTarget, dir);
  const ssl = async (...args: string[]) => {
    const r = await run(["openssl", ...args]);
    if (r.code !== 0) throw new Error(`openssl ${args.join(" ")} failed:\n${r.stderr}`);
  };
  for (const name of ["a", "b"]) {
    await ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f(`${name}.key`), "-out", f(`${name}.pem`), "-days", "365", "-subj", "/CN=127.0.0.1");
  }
  writeFileSync(f("junk.pem"), "not a certificate\n");
  node = await startNode([bin, "serve", "-port", "0"], { name: "solo" });
}, 120_000);

afterAll(async () => {
  await node?.stop("SIGKILL");
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Member {
  name: string;
  url: string;
  state: string;
}

/** Every node lists exactly these member names, all alive. */
async function allAlive(urls: string[], names: string[]): Promise<boolean> {
  for (const url of urls) {
    const { members } = (await (await fetch(`${url}/cluster`)).json()) as { members: Member[] };
    const alive = members.filter((m) => m.state === "alive").map((m) => m.name).sort();
    if (JSON.stringify(alive) !== JSON.stringify([...names].sort())) return false;
  }
  return true;
}

describe("the seeds' commands, as their READMEs print them", () => {
  test("the old makhzen: serve -port=P -cluster=URL,URL forms a cluster; its curl PUT on one node and GET on the others work", async () => {
    // On port 0 a node's URL is known once it has started, so each node lists the
    // ones before it: the second one URL, the third a comma list of two, as the old README.
    await using n1 = await startNode([bin, "serve", "-port=0"], { name: "n1" });
    await using n2 = await startNode([bin, "serve", "-port=0", `-cluster=${n1.url}`], { name: "n2" });
    await using n3 = await startNode([bin, "serve", "-port=0", `-cluster=${n1.url},${n2.url}`], { name: "n3" });
    const nodes = [n1, n2, n3];
    const urls = nodes.map((n) => n.url);
    // With port 0 a node names itself node-<random>: ask each for its name.
    const names = await Promise.all(urls.map(async (url) => ((await (await fetch(`${url}/cluster`)).json()) as { self: string }).self));
    await eventually(() => allAlive(urls, names), { timeoutMs: 30_000, what: "three members alive on every node" });
    // The old README, with this test's ports.
    const put = await run(["curl", "-sS", "-d", '{"value":"eu-west-1"}', "-H", "Content-Type: application/json", "-X", "PUT", `http://localhost:${n1.port}/items/region`]);
    expect(put.code).toBe(0);
    expect(JSON.parse(put.stdout)).toMatchObject({ key: "region", value: "eu-west-1" });
    for (const n of [n2, n3]) {
      await eventually(async () => {
        const get = await run(["curl", "-sS", `http://localhost:${n.port}/items/region`]);
        return get.code === 0 && JSON.parse(get.stdout).value === "eu-west-1";
      }, { timeoutMs: 20_000, what: `the write replicated to ${n.name}` });
    }
  }, 90_000);

  test("huton: agent -name agent1 -bindPort P1, then agent -name agent2 -bindPort P2 -peers 127.0.0.1:P1", async () => {
    await using agent1 = await startNode([bin, "agent", "-name", "agent1", "-bindPort", "0"], { name: "agent1" });
    await using agent2 = await startNode([bin, "agent", "-name", "agent2", "-bindPort", "0", "-peers", `127.0.0.1:${agent1.port}`], { name: "agent2" });
    await eventually(() => allAlive([agent1.url, agent2.url], ["agent1", "agent2"]), { timeoutMs: 30_000, what: "agent1 and agent2 alive on both" });
    const { members } = (await (await fetch(`${agent1.url}/cluster`)).json()) as { members: Member[] };
    expect(members.find((m) => m.name === "agent2")?.url).toBe(agent2.url);
    expect(await run([bin, "put", "k", "v", "-url", `127.0.0.1:${agent2.port}`])).toMatchObject({ code: 0, stdout: "OK\n" });
    await eventually(async () => (await run([bin, "get", "k", `-url=${agent1.url}`])).stdout === "v\n", { what: "the write replicated to agent1" });
  }, 90_000);
});

describe("client flags take effect in every spelling", () => {
  test("-url=, -bucket= and -ttl= reach the node, the bucket and the TTL they name", async () => {
    const before = Date.now();
    expect(await run([bin, "put", "k1", "v1", `-url=${node.url}`, "-bucket=b1", "-ttl=100"])).toMatchObject({ code: 0, stdout: "OK\n" });
    const after = Date.now();
    const item = (await (await fetch(`${node.url}/buckets/b1/items/k1`)).json()) as { value: string; expiresAt: number };
    expect(item.value).toBe("v1");
    expect(item.expiresAt).toBeGreaterThanOrEqual(before + 100_000);
    expect(item.expiresAt).toBeLessThanOrEqual(after + 100_000);
    expect((await fetch(`${node.url}/items/k1`)).status).toBe(404);
    // A node that is not there is an error, never an OK from the default node.
    using nobody = deadListener();
    const dead = await run([bin, "put", "k1", "v1", `-url=${nobody.url}`]);
    expect(dead.code).toBe(1);
    expect(dead.stderr).toMatch(/^makhzen: cannot reach http:\/\/127\.0\.0\.1:\d+/);
  });

  test("put --ttl takes a duration (10s) or a bare number of seconds, as Redis's EX", async () => {
    for (const [ttl, ms] of [["10s", 10_000], ["2m", 120_000], ["1.5", 1500], ["90", 90_000]] as const) {
      const before = Date.now();
      const r = await run([bin, "put", `ttl-${ttl}`, "v", "--ttl", ttl, "--json", "--url", node.url]);
      const after = Date.now();
      expect({ ttl, code: r.code }).toEqual({ ttl, code: 0 });
      const { expiresAt } = JSON.parse(r.stdout) as { expiresAt: number };
      expect({ ttl, inRange: expiresAt >= before + ms && expiresAt <= after + ms }).toEqual({ ttl, inRange: true });
    }
  });

  test("put KEY - reads the value from stdin as it is, like redis-cli -x", async () => {
    const text = "line one\nline two, ünïcode ✓\n";
    writeFileSync(f("value.txt"), text);
    expect(await run([bin, "put", "from-stdin", "-", "--url", node.url], { stdin: Bun.file(f("value.txt")) })).toMatchObject({ code: 0, stdout: "OK\n" });
    expect(JSON.parse((await run([bin, "get", "from-stdin", "--json", "--url", node.url])).stdout).value).toBe(text);
  });

  test("put KEY - stores stdin that is not UTF-8 as a binary value, and get writes its bytes back as they are", async () => {
    const bytes = new Uint8Array([0x66, 0xff, 0xfe, 0x00, 0x0a]);
    writeFileSync(f("binary.bin"), bytes);
    // It was refused (exit 2), though the node stores such values from Redis clients and octet-stream PUTs.
    expect(await run([bin, "put", "bin", "-", "--url", node.url], { stdin: Bun.file(f("binary.bin")) })).toMatchObject({ code: 0, stdout: "OK\n" });
    const raw = await fetch(`${node.url}/items/bin`, { headers: { accept: "application/octet-stream" } });
    expect(new Uint8Array(await raw.arrayBuffer())).toEqual(bytes);
    // `get` printed the base64 ("Zv/+AAo="), which passes for a text value; now the bytes, nothing added.
    const get = Bun.spawn([bin, "get", "bin", "--url", node.url], { stdout: "pipe", stderr: "pipe", env: cleanEnv() });
    const [code, out] = await Promise.all([get.exited, new Response(get.stdout).arrayBuffer()]);
    expect({ code, out: new Uint8Array(out) }).toEqual({ code: 0, out: bytes });
    // --json still says what it is.
    expect(JSON.parse((await run([bin, "get", "bin", "--json", "--url", node.url])).stdout)).toMatchObject({ value: "Zv/+AAo=", encoding: "base64" });
    // A text value still gets its newline.
    expect((await run([bin, "get", "from-stdin", "--url", node.url])).stdout).toBe("line one\nline two, ünïcode ✓\n\n");
  });
});

describe("refusals name what the user typed: one line, exit 2", () => {
  test("serve and client flags", async () => {
    const cases: [string[], string][] = [
      [["serve", "--idle-timeout", "300s"], "--idle-timeout must be from 1s to 255s, not 300s"],
      // A key no URL path can carry is the user's argument: a usage error (it was exit 1, as if the node refused it).
      [["put", "", "v", "--url", node.url], 'key "" cannot be used in a URL path'],
      [["get", "..", "--url", node.url], 'key ".." cannot be used in a URL path'],
      // A password in a URL is not repeated in the error.
      [["get", "k", "--url", "http://bob:s3cr3t@127.0.0.1:1"], '--url must be a URL like http://10.0.0.2:3000, scheme, host and port only; "http://bob:***@127.0.0.1:1" has a user name or password (a node takes a token: --token)'],
      [["get", "k", "--bucket", "..", "--url", node.url], '--bucket cannot be "..": a URL path cannot carry it'],
      [["serve", "-idle-timeout=300s"], "-idle-timeout must be from 1s to 255s, not 300s"],
      [["serve", "--max-key-bytes", "100kb"], "--max-key-bytes must be from 1 to 64kb, not 100kb"],
      [["serve", "--insecure=maybe"], '--insecure must be true or false, not "maybe"'],
      [["serve", "--cluster", "--name", "x"], "--cluster needs a value, but the next argument is the flag --name; write --cluster=VALUE if the value starts with a dash"],
      [["serve", "-p", "3000"], "unknown flag -p; see --help"],
      [["serve", "-prot=3000"], "unknown flag -prot (did you mean --port?); see --help"],
      [["serve", "-port=1", "--port", "2"], "--port is given twice; give it once"],
      // One dash is named with one dash, as typed (it was named --name).
      [["serve", "-name", "a", "-name", "b"], "-name is given twice; give it once"],
      [["serve", "-insecure=maybe"], '-insecure must be true or false, not "maybe"'],
      [["serve", "-port=abc"], '-port must be an integer from 0 to 65535, not "abc"'],
      [["get", "k", "-timeout", "5"], '-timeout must be a duration with a unit, like 500ms, 30s, 10m or 24h, not "5"'],
      [["serve", "--read-token", "r"], "--read-token needs --token: without it every client may write anyway"],
      [["serve", "--token", "t", "--read-token", "t"], "--read-token must differ from --token"],
      [["serve", "--cluster-secret", "short"], "--cluster-secret must be at least 16 characters (try: openssl rand -hex 32); it has 5"],
      [["serve", "--tls-cert", f("a.pem")], "--tls-cert and --tls-key go together: give both or neither"],
      [["serve", "--tls-cert", f("missing.pem"), "--tls-key", f("a.key")], `--tls-cert "${f("missing.pem")}" cannot be read: ENOENT`],
      [["serve", "--tls-cert", f("junk.pem"), "--tls-key", f("a.key")], `--tls-cert "${f("junk.pem")}" is not a PEM certificate: it holds no PEM block (-----BEGIN ...)`],
      [["serve", "--tls-cert", f("a.pem"), "--tls-key", f("a.pem")], `--tls-key "${f("a.pem")}" is not a PEM private key: none of its PEM blocks parses as one`],
      [["serve", "--tls-cert", f("a.pem"), "--tls-key", f("b.key")], `--tls-key "${f("b.key")}" is not the key of the certificate in --tls-cert "${f("a.pem")}"`],
      [["serve", "--tls-cert", f("a.pem"), "--tls-key", f("a.key"), "--tls-ca", f("junk.pem")], `--tls-ca "${f("junk.pem")}" is not a PEM certificate: it holds no PEM block (-----BEGIN ...)`],
      [["serve", "--heartbeat-interval", "10s"], "--heartbeat-interval must be at most 5s (the silence after which a member is suspect), not 10s"],
      [["serve", "extra"], 'unexpected argument "extra" (this command takes none); see --help'],
      // Flags that would have no effect.
      [["serve", "--fsync", "always"], "--fsync needs --data-dir: without one nothing is written to disk, so there is nothing to fsync"],
      [["serve", "-eviction=lru"], "-eviction needs --max-memory above 0: without a memory budget nothing is ever evicted"],
      [["get", "k", "--tls-ca", f("a.pem"), "--url", node.url], `--tls-ca has no effect with an http URL (${node.url}): give the node's https URL with --url, or leave --tls-ca out`],
      [["ls", "--tls-ca", f("a.pem")], "--tls-ca has no effect with an http URL (http://127.0.0.1:3000): give the node's https URL with --url, or leave --tls-ca out"],
      [["get", "k", "-url=not-a-url"], '-url must be a URL like http://10.0.0.2:3000, not "not-a-url"'],
      [["get", "k", "--tls-ca", f("junk.pem")], `--tls-ca "${f("junk.pem")}" is not a PEM certificate: it holds no PEM block (-----BEGIN ...)`],
      [["put", "k", "v", "-ttl=soon"], '-ttl must be a number > 0 (seconds) or a duration like 500ms, 10s, 5m or 1h, not "soon"'],
      [["put", "k", "v", "--bucket="], "--bucket needs a value; it was given an empty one"],
      [["put", "k", "v", "-bucket"], "-bucket needs a value"],
      [["ls", "-json=perhaps"], '-json must be true or false, not "perhaps"'],
      [["del", "k", "--url"], "--url needs a value"],
      [["status", "-urll", "x"], "unknown flag -urll (did you mean --url?); see --help"],
      [["dump", "--bucket", "--url", node.url], `--bucket needs a value, but the next argument is the flag --url; write --bucket=VALUE if the value starts with a dash`],
      [["load", "-token"], "-token needs a value"],
      // Nothing after --version is ignored; after --help only a command, whose help it shows.
      [["--version", "serve"], '--version takes no arguments; unexpected "serve"'],
      [["-v", "--port", "1"], '-v takes no arguments; unexpected "--port"'],
      [["--help", "serve", "--port"], '--help takes a command at most, not "serve" "--port"'],
      [["-h", "sreve"], 'unknown command "sreve" (did you mean "serve"?); commands: serve (or agent), get, put, del, ls, dump, load, status, forget, help, version'],
      [["constructor"], 'unknown command "constructor"; commands: serve (or agent), get, put, del, ls, dump, load, status, forget, help, version'],
      // A typo gets the closest command; a flag typed before the command is said as such.
      [["sever"], 'unknown command "sever" (did you mean "serve"?); commands: serve (or agent), get, put, del, ls, dump, load, status, forget, help, version'],
      [["gett", "k"], 'unknown command "gett" (did you mean "get"?); commands: serve (or agent), get, put, del, ls, dump, load, status, forget, help, version'],
      [["--port", "3001", "serve"], '--port before a command: flags go after it, as in "makhzen COMMAND --port ..."; commands: serve (or agent), get, put, del, ls, dump, load, status, forget, help, version'],
      [["version", "serve"], 'version takes no arguments; unexpected "serve"'],
      [["help", "serve", "x"], 'help takes a command at most, not "serve" "x"'],
      [["help", "SERVE"], 'unknown command "SERVE" (did you mean "serve"?); commands: serve (or agent), get, put, del, ls, dump, load, status, forget, help, version'],
      [["hepl"], 'unknown command "hepl" (did you mean "help"?); commands: serve (or agent), get, put, del, ls, dump, load, status, forget, help, version'],
      // A flag's value is not repeated: it may be a token, or a URL with a password.
      [["--token=supersecret123", "serve"], '--token before a command: flags go after it, as in "makhzen COMMAND --token ..."; commands: serve (or agent), get, put, del, ls, dump, load, status, forget, help, version'],
      // ~ is the home directory, as a shell reads it; ~user is not guessed.
      [["serve", "--data-dir=~bob/data"], '--data-dir "~bob/data": only ~ and ~/ are read as the home directory; give the path in full'],
      // An alias is named as typed, not as the flag it stands for.
      [["agent", "-bindPort=abc"], '-bindPort must be an integer from 0 to 65535, not "abc"'],
      [["serve", "-cluster", "ftp://x"], '-cluster must be a URL like http://10.0.0.2:3000, not "ftp://x"'],
      // Checked before any request: the node would refuse it too, but as exit 1 and not naming the flag.
      [["put", "k", "v", "--bucket", "bad name", "--url", node.url], '--bucket must be 1 to 64 characters of A-Z a-z 0-9 _ . -, not "bad name"'],
      [["dump", "-bucket=a/b", "--url", node.url], '-bucket must be 1 to 64 characters of A-Z a-z 0-9 _ . -, not "a/b"'],
      // Past the node's longest TTL: a range, not "must be a number".
      [["put", "k", "v", "--ttl", "99999999999999999999"], "--ttl must be at most 10000000000 seconds (about 317 years), not 99999999999999999999"],
      [["put", "k", "v", "-ttl=1000000d"], "-ttl must be at most 10000000000 seconds (about 317 years), not 1000000d"],
    ];
    for (const [args, message] of cases) {
      const r = await run([bin, ...args]);
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 2, stderr: `makhzen: ${message}\n` });
    }
  });
});

describe("what etcdctl, git and shell habits type", () => {
  test("`help` and `version` are --help and --version", async () => {
    const version = await run([bin, "version"]);
    expect({ code: version.code, stdout: version.stdout }).toEqual({ code: 0, stdout: (await run([bin, "--version"])).stdout });
    const help = await run([bin, "help", "put"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toBe((await run([bin, "put", "--help"])).stdout);
  });

  test("`help help` is the root's help, as git's", async () => {
    const root = (await run([bin, "--help"])).stdout;
    for (const args of [["help", "help"], ["help", "--help"]]) expect(await run([bin, ...args])).toEqual({ code: 0, stdout: root, stderr: "" });
  });

  test("a client command's --tls-ca and MAKHZEN_TLS_CA read ~/ as the home directory too", async () => {
    // A recheck: serve took --tls-ca=~/ca.pem, and every client command said it could not read "~/ca.pem".
    const junk = `--tls-ca "${f("junk.pem")}" is not a PEM certificate: it holds no PEM block (-----BEGIN ...)\n`;
    const typed = await run([bin, "get", "k", "--tls-ca=~/junk.pem", "--url", "https://127.0.0.1:1"], { env: { HOME: dir } });
    expect({ code: typed.code, stderr: typed.stderr }).toEqual({ code: 2, stderr: `makhzen: ${junk}` });
    const fromEnv = await run([bin, "get", "k", "--url", "https://127.0.0.1:1"], { env: { HOME: dir, MAKHZEN_TLS_CA: "~/junk.pem" } });
    expect({ code: fromEnv.code, stderr: fromEnv.stderr }).toEqual({ code: 2, stderr: `makhzen: ${junk.replace("--tls-ca", "MAKHZEN_TLS_CA")}` });
  });

  // The shell leaves ~ alone after `=` and in a variable: the node made a directory named "~" where it ran.
  test.each([
    ["--data-dir=~/kept", {}],
    ["", { MAKHZEN_DATA_DIR: "~/kept" }],
  ])("a data dir given as ~/kept (%s) is under the home directory, not in a directory named ~", async (flag, env) => {
    const home = mkdtempSync(join(tmpdir(), "makhzen-home-"));
    const cwd = mkdtempSync(join(tmpdir(), "makhzen-cwd-"));
    const args = [bin, "serve", "--port", "0", "--name", "n1", ...(flag ? [flag] : [])];
    const n = await startNode(args, { name: "tilde", env: { ...cleanEnv(), HOME: home, ...env }, cwd });
    try {
      await fetch(`${n.url}/items/k`, { method: "PUT", body: JSON.stringify({ value: "v" }), headers: { "content-type": "application/json" } });
      expect(existsSync(join(home, "kept", "makhzen.db"))).toBe(true);
      expect(existsSync(join(cwd, "~"))).toBe(false);
    } finally {
      await n.stop("SIGKILL");
      rmSync(home, { recursive: true, force: true });
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});

describe("a bad MAKHZEN_* variable is named as the variable", () => {
  test("serve and client commands", async () => {
    const cases: [string[], Record<string, string>, string][] = [
      [["serve"], { MAKHZEN_PORT: "abc" }, 'MAKHZEN_PORT must be an integer from 0 to 65535, not "abc"'],
      [["serve"], { MAKHZEN_IDLE_TIMEOUT: "300s" }, "MAKHZEN_IDLE_TIMEOUT must be from 1s to 255s, not 300s"],
      [["put", "k", "v", "--url", node.url], { MAKHZEN_BUCKET: "bad name" }, 'MAKHZEN_BUCKET must be 1 to 64 characters of A-Z a-z 0-9 _ . -, not "bad name"'],
      [["get", "k", "--url", "https://127.0.0.1:1"], { MAKHZEN_TLS_CA: f("junk.pem") }, `MAKHZEN_TLS_CA "${f("junk.pem")}" is not a PEM certificate: it holds no PEM block (-----BEGIN ...)`],
      // Checked by the node's own rules (config.ts, ops/tls.ts), which named the flag: now the variable set.
      [["serve"], { MAKHZEN_HOST: "bad host" }, 'MAKHZEN_HOST "bad host" is not an address to listen on: an IPv4 address (four numbers from 0 to 255), an IPv6 address without brackets (::1) or a hostname'],
      [["serve", "--tls-cert", f("a.pem"), "--tls-key", f("a.key")], { MAKHZEN_TLS_CA: f("junk.pem") }, `MAKHZEN_TLS_CA "${f("junk.pem")}" is not a PEM certificate: it holds no PEM block (-----BEGIN ...)`],
      [["serve", "--host", "bad host"], { MAKHZEN_PORT: "0" }, '--host "bad host" is not an address to listen on: an IPv4 address (four numbers from 0 to 255), an IPv6 address without brackets (::1) or a hostname'],
    ];
    for (const [args, env, message] of cases) {
      const r = await run([bin, ...args], { env });
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 2, stderr: `makhzen: ${message}\n` });
    }
  });

  test("a MAKHZEN_* variable nothing reads is refused, naming it, not ignored", async () => {
    // Before, MAKHZEN_PROT=3001 started a node on :3000 with no word said.
    const cases: [string[], Record<string, string>, string][] = [
      [["serve"], { MAKHZEN_PROT: "3001" }, "MAKHZEN_PROT is not a makhzen setting (did you mean MAKHZEN_PORT?); unset it, or see --help for the MAKHZEN_* variables"],
      [["serve"], { MAKHZEN_MAXMEMORY: "1mb" }, "MAKHZEN_MAXMEMORY is not a makhzen setting (did you mean MAKHZEN_MAX_MEMORY?); unset it, or see --help for the MAKHZEN_* variables"],
      [["get", "k", "--url", node.url], { MAKHZEN_ULR: node.url }, "MAKHZEN_ULR is not a makhzen setting (did you mean MAKHZEN_URL?); unset it, or see --help for the MAKHZEN_* variables"],
      [["ls", "--url", node.url], { MAKHZEN_WHATEVER: "1" }, "MAKHZEN_WHATEVER is not a makhzen setting; unset it, or see --help for the MAKHZEN_* variables"],
    ];
    for (const [args, env, message] of cases) {
      const r = await run([bin, ...args], { env });
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 2, stderr: `makhzen: ${message}\n` });
    }
    // A variable another command reads is not refused: a shell set up for `serve` still runs `get`.
    const r = await run([bin, "get", "absent-key", "--url", node.url], { env: { MAKHZEN_DATA_DIR: "/nonexistent", MAKHZEN_PORT: "1" } });
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 1, stderr: 'makhzen: key "absent-key" not found\n' });
    // MAKHZEN_TLS_CA is a standing default for https nodes: with an http one it is not even read (a junk file failed get with exit 2).
    const http = await run([bin, "get", "absent-key", "--url", node.url], { env: { MAKHZEN_TLS_CA: f("junk.pem") } });
    expect({ code: http.code, stderr: http.stderr }).toEqual({ code: 1, stderr: 'makhzen: key "absent-key" not found\n' });
    // Help still works, which the refusal points to.
    expect((await run([bin, "serve", "--help"], { env: { MAKHZEN_PROT: "3001" } })).code).toBe(0);
  });

  test("the node states its real TTL bound over HTTP", async () => {
    const res = await fetch(`${node.url}/items/far`, { method: "PUT", body: JSON.stringify({ value: "v", ttl: 1e11 }) });
    expect(res.status).toBe(422);
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain("ttl must be a number of seconds > 0 and <= 10000000000");
  });
});

describe("--url names a node: scheme, host and port", () => {
  test("a query, fragment or path is refused, from the flag or MAKHZEN_URL, before any request", async () => {
    // Before, `dump --url 'http://h:p?x=1' > backup` wrote the GET / index and exited 0.
    const like = "must be a URL like http://10.0.0.2:3000, scheme, host and port only";
    const q = `${node.url}?x=1`;
    const cases: [string[], Record<string, string>, string][] = [
      [["dump", "--url", q], {}, `--url ${like}; "${q}" has a query (?...)`],
      [["get", "a", `-url=${node.url}#frag`], {}, `-url ${like}; "${node.url}#frag" has a fragment (#...)`],
      [["get", "a", "--url", `${node.url}/some/prefix`], {}, `--url ${like}; "${node.url}/some/prefix" has a path (/some/prefix); a node serves at the root`],
      [["ls"], { MAKHZEN_URL: q }, `MAKHZEN_URL ${like}; "${q}" has a query (?...)`],
      [["status"], { MAKHZEN_URL: `${node.url}?` }, `MAKHZEN_URL ${like}; "${node.url}?" has a query (?...)`],
      [["serve", "--peers", `${node.url}?x=1`], {}, `--peers ${like}; "${q}" has a query (?...)`],
    ];
    for (const [args, env, message] of cases) {
      const r = await run([bin, ...args], { env });
      expect({ args, code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ args, code: 2, stdout: "", stderr: `makhzen: ${message}\n` });
    }
    // A final slash is still the node.
    expect(await run([bin, "put", "slash", "v", "--url", `${node.url}/`])).toMatchObject({ code: 0, stdout: "OK\n" });
    // MAKHZEN_TLS_CA is a standing default: unused for an http node, where --tls-ca typed is refused.
    expect(await run([bin, "get", "slash", "--url", node.url], { env: { MAKHZEN_TLS_CA: f("a.pem") } })).toMatchObject({ code: 0, stdout: "v\n" });
  });

  test("a URL that reaches something else than a node: one line, exit 1, nothing on stdout", async () => {
    using other = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => Response.json({ hello: "not makhzen" }) });
    const url = `http://127.0.0.1:${other.port}`;
    for (const args of [["get", "a"], ["put", "a", "v"], ["ls"], ["status"], ["dump"], ["load"]]) {
      const r = await run([bin, ...args, "--url", url]);
      expect({ args, code: r.code, stdout: r.stdout }).toEqual({ args, code: 1, stdout: "" });
      expect(r.stderr).toMatch(new RegExp(`^makhzen: ${url} answered HTTP 200 \\(application/json[^)]*\\) that is not .+: is it a makhzen node\\?\n$`));
    }
  });
});

describe("a port in use", () => {
  test("is named with its flag: --port or --resp-port", async () => {
    using busy = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const line = (flag: string) => `makhzen: cannot listen on 127.0.0.1:${busy.port}: address in use (${flag})\n`;
    // Before, a busy --resp-port was reported as the HTTP port.
    expect(await run([bin, "serve", "--port", "0", "--resp-port", String(busy.port)])).toMatchObject({ code: 1, stderr: line("--resp-port") });
    expect(await run([bin, "serve", "--port", String(busy.port), "--resp-port", "0"])).toMatchObject({ code: 1, stderr: line("--port") });
  });

  test("under --log-format json, why the node could not start is a JSON log line, so jq reads the whole of stderr", async () => {
    using busy = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    for (const [args, env] of [[["--log-format", "json"], {}], [[], { MAKHZEN_LOG_FORMAT: "json" }]] as const) {
      const r = await run([bin, "serve", "--port", String(busy.port), ...args], { env });
      expect(r.code).toBe(1);
      const lines = r.stderr.trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.at(-1)).toMatchObject({ level: "error", msg: `cannot listen on 127.0.0.1:${busy.port}: address in use (--port)`, exitCode: 1 });
    }
  });
});

describe("help", () => {
  test("has no ANSI colours on a pipe, and shows defaults in the units users type", async () => {
    for (const args of [["--help"], ["serve", "--help"], ["agent", "-h"], ["put", "-help"], ["ls", "--help"], ["--help", "put"]]) {
      const r = await run([bin, ...args]);
      expect({ args, code: r.code, ansi: r.stdout.includes("\u001B[") }).toEqual({ args, code: 0, ansi: false });
      expect(r.stdout).toContain("USAGE");
    }
    const serve = (await run([bin, "serve", "--help"])).stdout;
    for (const shown of [
      "Heartbeat period, e.g. 1s (default 1s; env MAKHZEN_HEARTBEAT_INTERVAL)",
      "1s to 255s (default 30s; env MAKHZEN_IDLE_TIMEOUT)",
      "(default 256mb; env MAKHZEN_QUEUE_MAX_BYTES)",
      "How long deletes are remembered, e.g. 24h (default 24h; env MAKHZEN_TOMBSTONE_TTL)",
      "(default 500ms; env MAKHZEN_MAX_CLOCK_OFFSET)",
      "-bindPort, --port=<port>",
    ]) {
      expect(serve).toContain(shown);
    }
    expect(serve).not.toMatch(/default \d{4,}ms/);
    const put = (await run([bin, "put", "--help"])).stdout;
    expect((await run([bin, "--help", "put"])).stdout).toBe(put);
    expect(put).toContain("a bare number is seconds");
    expect(put).toContain("- reads it from stdin");
  });
});
