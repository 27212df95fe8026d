/**
 * Like Promise.all, but when several fail the error reported is the first in argument order, not the first
 * in time: the same broken cluster then always gives the same message.
 */
export async function allInOrder<const T extends readonly Promise<unknown>[]>(
  promises: T,
): Promise<{-readonly [K in keyof T]: Awaited<T[K]>}> {
  const settled = await Promise.allSettled(promises)
  const values: unknown[] = []
  for (const outcome of settled) {
    if (outcome.status === 'rejected') throw outcome.reason
    values.push(outcome.value)
  }
  return values as {-readonly [K in keyof T]: Awaited<T[K]>}
}
