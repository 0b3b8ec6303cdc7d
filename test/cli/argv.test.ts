import { describe, expect, test } from "bun:test";
import { parseArgs, type ArgsDef } from "citty";
import { normalizeArgs } from "../../src/cli/_argv.ts";
import { CliError } from "../../src/cli/_errors.ts";
import { commands } from "../../src/cli/main.ts";

/**
 * The command line of every command, as citty receives it after normalizeArgs:
 * each flag in each of its spellings lands on its name, and what would not take
 * effect is refused with one usage error (exit 2). serve's flags are also walked
 * through to the node options in serve-flags.test.ts.
 */

const argsOf = (name: string): ArgsDef => (commands[name]!.args ?? {}) as ArgsDef;
const parsed = (raw: string[], def: ArgsDef) => parseArgs(normalizeArgs(raw, def).argv, def) as Record<string, unknown>;

function refusal(raw: string[], def: ArgsDef): string {
  try {
    normalizeArgs(raw, def);
  } catch (e) {
    expect(e).toBeInstanceOf(CliError);
    expect((e as CliError).exitCode).toBe(2);
    return (e as CliError).message;
  }
  throw new Error(`expected ${JSON.stringify(raw)} to be refused`);
}

/** Positionals a command needs, so citty does not stop at a missing one. */
const POSITIONALS: Record<string, string[]> = { get: ["k"], put: ["k", "v"], del: ["k"], forget: ["n"] };

describe("every flag of every command", () => {
  const names = Object.keys(commands);

  test("covers the client commands and serve", () => {
    expect(names.sort()).toEqual(["del", "dump", "forget", "get", "load", "ls", "put", "serve", "status"]);
  });

  for (const name of names) {
    test(`${name}: --x v, --x=v, -x v and -x=v all set the flag, aliases included`, () => {
      const def = argsOf(name);
      const positionals = POSITIONALS[name] ?? [];
      for (const [flag, d] of Object.entries(def)) {
        if (d.type === "positional") continue;
        const aliases = (d as { alias?: string | string[] }).alias;
        for (const spelling of [flag, ...(aliases === undefined ? [] : [aliases].flat())]) {
          if (d.type === "boolean") {
            for (const [raw, value] of [[`--${spelling}`, true], [`-${spelling}`, true], [`--${spelling}=no`, false], [`-${spelling}=true`, true], [`--no-${spelling}`, false]] as const) {
              expect({ name, raw, value: parsed([raw, ...positionals], def)[flag] }).toEqual({ name, raw, value });
            }
            continue;
          }
          // A value with an = and a leading dash survives every spelling that can carry it.
          for (const raw of [[`--${spelling}`, "a=b"], [`--${spelling}=a=b`], [`-${spelling}`, "a=b"], [`-${spelling}=a=b`], [`-${spelling}=-x`]]) {
            const want = raw.length === 1 ? raw[0]!.slice(raw[0]!.indexOf("=") + 1) : raw[1];
            expect({ name, raw, value: parsed([...positionals, ...raw], def)[flag] }).toEqual({ name, raw, value: want });
          }
        }
      }
    });

    test(`${name}: an unknown flag is refused in every spelling, -h is help`, () => {
      const def = argsOf(name);
      for (const raw of ["--zzzzzz", "--zzzzzz=1", "-zzzzzz", "-zzzzzz=1", "-x"]) {
        expect(refusal([raw], def)).toBe(`unknown flag ${raw.split("=")[0]}; see --help`);
      }
      for (const raw of ["-h", "--help", "-help"]) expect(normalizeArgs([...(POSITIONALS[name] ?? []), raw], def).help).toBe(true);
    });
  }

  test("the seeds' spellings: the old makhzen's -port= and -cluster=, huton's -name, -bindPort and -peers", () => {
    const serve = argsOf("serve");
    expect(parsed(["-port=3001", "-cluster=http://127.0.0.1:3002,http://127.0.0.1:3003"], serve)).toMatchObject({
      port: "3001",
      peers: "http://127.0.0.1:3002,http://127.0.0.1:3003",
    });
    expect(parsed(["-name", "agent2", "-bindPort", "8200", "-peers", "127.0.0.1:8100"], serve)).toMatchObject({
      name: "agent2",
      port: "8200",
      peers: "127.0.0.1:8100",
    });
    // The old citty reading: short flags -p -o -r -t, port unset.
    expect(parseArgs(["-port=3001"], serve).port).toBeUndefined();
  });

  test("the client flags the issue found ignored now land: -url=, -bucket=, -ttl=", () => {
    expect(parsed(["k", "v", "-url=http://127.0.0.1:3999", "-bucket=b1", "-ttl=1"], argsOf("put"))).toMatchObject({
      key: "k",
      value: "v",
      url: "http://127.0.0.1:3999",
      bucket: "b1",
      ttl: "1",
    });
  });

  test("what would not take effect is refused with one line", () => {
    const serve = argsOf("serve");
    const put = argsOf("put");
    expect(refusal(["--insecure=maybe"], serve)).toBe('--insecure must be true or false, not "maybe"');
    expect(refusal(["--no-insecure=1"], serve)).toBe('--no-insecure takes no value, not "1"');
    expect(refusal(["--cluster", "--name", "x"], serve)).toBe(
      "--cluster needs a value, but the next argument is the flag --name; write --cluster=VALUE if the value starts with a dash",
    );
    expect(refusal(["--peers", "-h"], serve)).toStartWith("--peers needs a value, but the next argument is the flag -h;");
    expect(refusal(["--port"], serve)).toBe("--port needs a value");
    expect(refusal(["--port="], serve)).toBe("--port needs a value; it was given an empty one");
    expect(refusal(["--port", "1", "-port=2"], serve)).toBe("--port is given twice; give it once");
    expect(refusal(["--peers", "http://a:1", "--cluster", "http://b:1"], serve)).toBe("--peers and --cluster are the same flag; give it once");
    expect(refusal(["--prot", "1"], serve)).toBe("unknown flag --prot (did you mean --port?); see --help");
    expect(refusal(["maybe"], serve)).toBe('unexpected argument "maybe" (this command takes none); see --help');
    expect(refusal(["k", "v", "extra"], put)).toBe('unexpected argument "extra"; see --help');
  });

  test("values that look like flags: a negative number, - for stdin, anything after --", () => {
    const put = argsOf("put");
    expect(parsed(["k", "-1"], put)).toMatchObject({ key: "k", value: "-1" });
    expect(parsed(["k", "-"], put)).toMatchObject({ key: "k", value: "-" });
    expect(parsed(["--ttl", "-1", "k", "v"], put)).toMatchObject({ ttl: "-1" });
    expect(parsed(["--json", "--", "-k", "--v"], put)).toMatchObject({ json: true, key: "-k", value: "--v" });
    expect(normalizeArgs(["k", "--", "--help"], put).help).toBe(false);
  });
});

test("a URL's scheme is read in any case: HTTPS:// is https (the client took it for http, refusing --tls-ca or not using MAKHZEN_TLS_CA)", async () => {
  const { parseUrl } = await import("../../src/cli/_flags.ts");
  expect(parseUrl("url", "HTTPS://127.0.0.1:3000")).toBe("https://127.0.0.1:3000");
  expect(parseUrl("url", "Http://Node-A:3000")).toBe("http://Node-A:3000");
  expect(parseUrl("url", "127.0.0.1:3000")).toBe("http://127.0.0.1:3000");
});
