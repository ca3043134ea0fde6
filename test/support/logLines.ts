/**
 * The server logs one JSON line per entry through `console.log`, a turn's lines in one call joined
 * by newlines; tests read them back here, one entry per line.
 */
export const captureLogLines = (into: Array<string>): (() => void) => {
  const original = console.log
  console.log = (...args: Array<unknown>) => {
    into.push(...args.map((arg) => (typeof arg === "string" ? arg : JSON.stringify(arg))).join(" ").split("\n"))
  }
  return () => {
    console.log = original
  }
}
