/**
 * The server's own origin, as a browser names it: the scheme and the `Host` the page was loaded
 * from. A cookie-authenticated change must come from there (SPEC §12); so must a console sign-in.
 */
export const isOwnOrigin = (origin: string | undefined, host: string | undefined): boolean =>
  origin !== undefined && host !== undefined && host !== "" && (origin === `http://${host}` || origin === `https://${host}`)

/** Methods that change nothing: a cookie may be used for them from anywhere the browser sends it. */
export const isSafeMethod = (method: string): boolean => method === "GET" || method === "HEAD"
