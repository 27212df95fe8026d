import {createHash, timingSafeEqual} from 'node:crypto'

/**
 * Compares a presented token with the expected one in constant time. Both are hashed first, so the comparison
 * runs on equal-length digests and its duration says nothing about the expected token's length or prefix.
 */
export function tokensEqual(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}

export interface FailureLimiterOptions {
  /** Failures within `windowMs` that trigger a block. */
  maxFailures?: number
  windowMs?: number
  /** How long a source stays blocked once it hit the limit. */
  blockMs?: number
  /** Sources tracked at once; the oldest entries are forgotten first, so a flood cannot exhaust memory. */
  maxSources?: number
  now?: () => number
}

interface SourceRecord {
  failures: number[]
  blockedUntil: number
}

/**
 * Counts failed authentications per source address and blocks a source that fails too often. Only failures are
 * asked about (see AgentListener): a source's block never keeps out a client whose credential is right.
 */
export class FailureLimiter {
  private readonly maxFailures: number
  private readonly windowMs: number
  private readonly blockMs: number
  private readonly maxSources: number
  private readonly now: () => number
  private readonly sources = new Map<string, SourceRecord>()

  constructor(options: FailureLimiterOptions = {}) {
    this.maxFailures = options.maxFailures ?? 5
    this.windowMs = options.windowMs ?? 60_000
    this.blockMs = options.blockMs ?? 60_000
    this.maxSources = options.maxSources ?? 10_000
    this.now = options.now ?? Date.now
  }

  /** Milliseconds the source must still wait, or 0 when it may try. */
  blockedFor(source: string): number {
    const record = this.sources.get(source)
    if (record === undefined) return 0
    return Math.max(0, record.blockedUntil - this.now())
  }

  /** Counts a failure; true when it started a block. */
  recordFailure(source: string): boolean {
    const now = this.now()
    const record = this.sources.get(source) ?? {failures: [], blockedUntil: 0}
    this.sources.delete(source)
    record.failures = record.failures.filter((at) => now - at < this.windowMs)
    record.failures.push(now)
    const blocks = record.failures.length >= this.maxFailures
    if (blocks) {
      record.blockedUntil = now + this.blockMs
      record.failures = []
    }
    this.sources.set(source, record)
    if (this.sources.size > this.maxSources) {
      const oldest = this.sources.keys().next().value
      if (oldest !== undefined) this.sources.delete(oldest)
    }
    return blocks
  }
}
