/** The server logs one JSON line per entry through `console.log`; tests read them back here. */
export const captureLogLines = (into: Array<string>): (() => void) => {
  const original = console.log
  console.log = (...args: Array<unknown>) => {
    into.push(args.map((arg) => (typeof arg === "string" ? arg : JSON.stringify(arg))).join(" "))
  }
  return () => {
    console.log = original
  }
}
