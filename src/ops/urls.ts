/** A comma between two URLs of a list: one followed by a scheme (a comma inside user info is not). */
const LIST_COMMA = /,(?=\s*[a-z][a-z0-9+.-]*:\/\/)/i;

/**
 * A URL as an error may show it, its user info masked (`//user:***@`, or `//***@`
 * when there is no password: a user name alone may be a token), since errors reach
 * terminals and logs. A leaf: the CLI's flags, the client's `url` and createNode's
 * `peers` and `advertise` all refuse a URL with a user name, and say so. It takes
 * the value as given (one URL, or a comma-separated list of them) and masks up to
 * each part's last `@`, whatever the user info holds (a space, a `/`, a comma), with
 * or without a scheme: more is masked rather than less.
 */
export const maskPassword = (text: string): string =>
  text
    .split(LIST_COMMA)
    .map((part) => {
      const at = part.lastIndexOf("@");
      if (at === -1) return part;
      const scheme = part.indexOf("://");
      const from = scheme !== -1 && scheme < at ? scheme + 3 : 0;
      // A user name is kept only where a colon ends it before the first @ (`u:p@`): a colon after
      // it is a host's port (`tok@h1:3000,tok2@h2:3000`, a list with no scheme, is one part).
      const colon = part.indexOf(":", from);
      const kept = colon !== -1 && colon < part.indexOf("@", from) ? colon + 1 : from;
      return `${part.slice(0, kept)}***${part.slice(at)}`;
    })
    .join(",");
