/**
 * Splits an inline command line into arguments as Redis does (sds.c's
 * sdssplitargs), so `SET k "a b\x00c"` typed into telnet means what it means to
 * redis-server: blanks separate arguments; "double quotes" take the escapes \n \r
 * \t \b \a \\ \" and \xHH; 'single quotes' take only \'; a closing quote must be
 * followed by a blank or the end. Undefined for unbalanced quotes.
 */
export function splitInline(line: Buffer): Buffer[] | undefined {
  const args: Buffer[] = [];
  let i = 0;
  const n = line.length;
  for (;;) {
    while (i < n && isSpace(line[i]!)) i++;
    if (i >= n) return args;
    const out: number[] = [];
    let inDouble = false;
    let inSingle = false;
    for (;;) {
      if (inDouble) {
        if (i >= n) return undefined;
        const c = line[i]!;
        if (c === 0x5c /* \ */ && line[i + 1] === 0x78 /* x */ && isHex(line[i + 2]) && isHex(line[i + 3])) {
          out.push(parseInt(String.fromCharCode(line[i + 2]!, line[i + 3]!), 16));
          i += 3;
        } else if (c === 0x5c && i + 1 < n) {
          i++;
          const e = line[i]!;
          out.push(ESCAPES[e] ?? e);
        } else if (c === 0x22 /* " */) {
          if (i + 1 < n && !isSpace(line[i + 1]!)) return undefined;
          inDouble = false;
          i++;
          break;
        } else out.push(c);
      } else if (inSingle) {
        if (i >= n) return undefined;
        const c = line[i]!;
        if (c === 0x5c && line[i + 1] === 0x27 /* ' */) {
          i++;
          out.push(0x27);
        } else if (c === 0x27) {
          if (i + 1 < n && !isSpace(line[i + 1]!)) return undefined;
          inSingle = false;
          i++;
          break;
        } else out.push(c);
      } else {
        if (i >= n) break;
        const c = line[i]!;
        if (isSpace(c)) break;
        if (c === 0x22) inDouble = true;
        else if (c === 0x27) inSingle = true;
        else out.push(c);
      }
      i++;
    }
    args.push(Buffer.from(out));
  }
}

const ESCAPES: Record<number, number> = { 0x6e: 10, 0x72: 13, 0x74: 9, 0x62: 8, 0x61: 7 };
const isSpace = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0b || c === 0x0c;
const isHex = (c: number | undefined): boolean =>
  c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66));
