import autocannon from 'autocannon'

import {tlsMaterial} from '../client.js'
import type {Endpoint} from '../paths/path.js'
import {percentile} from '../stats.js'
import {runCommand, startProcess, type ManagedProcess} from '../processes.js'

export interface SmallRequestResult {
  requestsPerSecond: number
  p50Ms: number
  p99Ms: number
}

// More failures than this means the path is broken, not slow.
const toleratedFailureRatio = 0.001

/** Keep-alive GETs of the ~1 KiB JSON reply on `connections` connections for a fixed time. */
export async function smallRequestLoad(
  endpoint: Endpoint,
  connections: number,
  seconds: number,
): Promise<SmallRequestResult> {
  const material = tlsMaterial(endpoint)
  // autocannon's own histogram keeps whole milliseconds; a loopback p50 is a fraction of one.
  const latenciesMs: number[] = []
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: `${endpoint.baseUrl}/json`,
        connections,
        duration: seconds,
        timeout: 10,
        ...(material !== undefined && {tlsOptions: {...material, rejectUnauthorized: true}}),
      },
      (error: unknown, finished) => {
        if (error === null || error === undefined) resolve(finished)
        else reject(error instanceof Error ? error : new Error('autocannon failed', {cause: error}))
      },
    )
    instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
      if (statusCode === 200) latenciesMs.push(responseTimeMs)
    })
  })
  const failures = result.errors + result.non2xx
  if (failures > Math.max(1, result.requests.total * toleratedFailureRatio)) {
    throw new Error(
      `${failures} of ${result.requests.total} requests failed (errors incl. timeouts ${result.errors}, non-2xx ${result.non2xx})`,
    )
  }
  return {
    requestsPerSecond: result.requests.total / seconds,
    p50Ms: percentile(latenciesMs, 0.5),
    p99Ms: percentile(latenciesMs, 0.99),
  }
}

const warmUpSeconds = 2

/**
 * Every path starts fresh processes: a discarded first run lets JIT compilation and connection pools settle,
 * so that the figures are of the path and not of its first second.
 */
export async function warmUp(endpoint: Endpoint, connections: number): Promise<void> {
  await smallRequestLoad(endpoint, connections, warmUpSeconds)
}

function curlArguments(endpoint: Endpoint, bytes: number, maxSeconds: number): string[] {
  return [
    '-sS',
    '--fail',
    '--output',
    '/dev/null',
    '--max-time',
    String(maxSeconds),
    '--write-out',
    '%{speed_download} %{size_download}',
    ...(endpoint.tls === undefined
      ? []
      : ['--cacert', endpoint.tls.caFile, '--cert', endpoint.tls.certFile, '--key', endpoint.tls.keyFile]),
    `${endpoint.baseUrl}/bytes/${bytes}`,
  ]
}

/** One response of `bytes` fetched with curl, which discards it; bytes per second. */
export async function bulkDownload(endpoint: Endpoint, bytes: number, maxSeconds: number): Promise<number> {
  const result = await runCommand('curl', curlArguments(endpoint, bytes, maxSeconds))
  const [speed, size] = result.output.split(' ').map(Number)
  if (result.code !== 0 || speed === undefined || size !== bytes) {
    throw new Error(`curl got ${size ?? '?'} of ${bytes} bytes (exit ${result.code}): ${result.output}`)
  }
  return speed
}

/** A bulk download left running in the background, e.g. to compete with small requests. */
export function startBulkDownload(endpoint: Endpoint, bytes: number, maxSeconds: number): ManagedProcess {
  return startProcess('curl (competing bulk)', 'curl', curlArguments(endpoint, bytes, maxSeconds))
}
