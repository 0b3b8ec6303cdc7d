/**
 * A URL as an error may show it: a password in it (`//user:secret@`) masked, since
 * errors reach terminals and logs. A leaf: the CLI's flags, the client's `url` and
 * createNode's `peers` and `advertise` all refuse a URL with a user name, and say so.
 */
export const maskPassword = (text: string): string => text.replace(/(\/\/[^/@\s]*?:)[^/@\s]*@/g, "$1***@");
