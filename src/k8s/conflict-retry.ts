import {isConflict} from './api-errors.js'

export const DEFAULT_CONFLICT_ATTEMPTS = 5

/**
 * Read-modify-write with optimistic concurrency: `attempt` must read the object afresh, change it and
 * write it back carrying the resourceVersion it read. A 409 means someone wrote in between, so the whole
 * attempt runs again on the new state, a bounded number of times; the last conflict is reported.
 */
export async function retryOnConflict<T>(
  attempt: (attemptNumber: number) => Promise<T>,
  attempts = DEFAULT_CONFLICT_ATTEMPTS,
): Promise<T> {
  for (let attemptNumber = 1; ; attemptNumber++) {
    try {
      return await attempt(attemptNumber)
    } catch (error) {
      if (!isConflict(error) || attemptNumber >= attempts) throw error
    }
  }
}
