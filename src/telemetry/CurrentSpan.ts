/**
 * The span a fiber's annotations and log events go to, read from the fiber itself: what Effect's
 * `currentSpan` finds (the nearest span that propagates, never an external one), without the
 * effects around it, for steps that run on every request.
 */
import { Context, type Fiber, Option, Tracer } from "effect"

const propagating = (span: Option.Option<Tracer.AnySpan>): Tracer.Span | undefined => {
  if (Option.isNone(span) || span.value._tag === "ExternalSpan") return undefined
  return Context.get(span.value.context, Tracer.DisablePropagation) ? propagating(span.value.parent) : span.value
}

export const currentSpanOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): Tracer.Span | undefined =>
  propagating(Context.getOption(fiber.currentContext, Tracer.ParentSpan))
