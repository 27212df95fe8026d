export interface BackoffOptions {
  initialMs?: number
  maxMs: number
  /** Growth per failed attempt; Tower's agent uses 1.4. */
  factor?: number
  /** Returns a number in [0, 1); injected by tests. */
  random?: () => number
}

/**
 * Exponential backoff with jitter: the n-th delay is drawn from [base/2, base) with base = initial × factor^n,
 * capped at `maxMs`. Jitter spreads the reconnects of many agents after a proxy restart.
 */
export class Backoff {
  private readonly initialMs: number
  private readonly maxMs: number
  private readonly factor: number
  private readonly random: () => number
  private attempt = 0

  constructor(options: BackoffOptions) {
    this.initialMs = options.initialMs ?? 1000
    this.maxMs = options.maxMs
    this.factor = options.factor ?? 1.4
    this.random = options.random ?? Math.random
  }

  /** Failed attempts since the last reset. */
  get attempts(): number {
    return this.attempt
  }

  next(): number {
    const base = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempt)
    this.attempt++
    return Math.round(base / 2 + (this.random() * base) / 2)
  }

  /** The longest delay, e.g. after the proxy rejected our token: retrying sooner cannot help. */
  longest(): number {
    this.attempt++
    return this.maxMs
  }

  reset(): void {
    this.attempt = 0
  }
}
