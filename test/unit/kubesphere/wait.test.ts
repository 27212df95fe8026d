import assert from 'node:assert/strict'

import {ApiException} from '@kubernetes/client-node'

import {progress} from '../../../src/cli/progress.js'
import {KsctlError} from '../../../src/errors.js'
import {interruption} from '../../../src/interruption.js'
import {log} from '../../../src/log.js'
import {toKsctlError} from '../../../src/k8s/api-errors.js'
import {waitUntil, type WaitOptions} from '../../../src/kubesphere/wait.js'

const operation = {
  verb: 'get' as const,
  object: {resource: 'clusters.cluster.kubesphere.io', name: 'member1'},
}

/** The KsctlError `ClusterClient.call` makes of an HTTP answer with this status. */
function apiFailure(status: number, message: string): KsctlError {
  const body = JSON.stringify({kind: 'Status', code: status, message})
  return toKsctlError(
    new ApiException(status, message, body, {}),
    operation,
    'host',
    'https://127.0.0.1:6443',
  )
}

/** The KsctlError of a refused connection, as fetch reports one. */
function refused(): KsctlError {
  const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), {code: 'ECONNREFUSED'})
  return toKsctlError(new TypeError('fetch failed', {cause}), operation, 'host', 'https://127.0.0.1:6443')
}

/** A poll that answers from a script: an error is thrown, a string is a state, `done` ends the wait. */
function scripted(...answers: (KsctlError | string)[]): WaitOptions['poll'] {
  return () => {
    const answer = answers.shift() ?? 'done'
    if (answer instanceof KsctlError) return Promise.reject(answer)
    return Promise.resolve({done: answer === 'done', state: answer === 'done' ? 'finished' : answer})
  }
}

const timedOut = (last: string, limitMs: number) =>
  new KsctlError(`gave up after ${limitMs} ms (${last})`, {code: 'TIMEOUT'})

describe('waitUntil', () => {
  const shown: string[] = []
  const originalUpdate = progress.update.bind(progress)

  beforeEach(() => {
    shown.length = 0
    progress.configure(undefined)
    progress.update = (state: string) => {
      shown.push(state)
      originalUpdate(state)
    }
    interruption.reset()
    // The states are recorded above; the log lines they would print are not this test's subject.
    log.configure('warn')
  })

  afterEach(() => {
    progress.update = originalUpdate
    interruption.reset()
    log.configure('info')
  })

  it('retries 429, 5xx, a refused connection and a request time-out until the poll succeeds, showing each', async () => {
    const requestTimeout = new KsctlError('the API server of context "host" did not answer within 30s', {
      code: 'TIMEOUT',
    })
    const final = await waitUntil({
      what: 'the test',
      defaultTimeoutMs: 10_000,
      intervalMs: 20,
      poll: scripted(
        'waiting for Initialized',
        apiFailure(503, 'etcdserver: leader changed'),
        apiFailure(429, 'storage is (re)initializing'),
        refused(),
        requestTimeout,
        apiFailure(500, 'Internal error occurred'),
        'done',
      ),
      onTimeout: timedOut,
    })
    assert.equal(final, 'finished')
    assert.deepEqual(shown, [
      'waiting for Initialized',
      'waiting for Initialized; retrying after: the API server of context "host" failed to get clusters.cluster.kubesphere.io member1 (HTTP 503): etcdserver: leader changed',
      'waiting for Initialized; retrying after: the API server of context "host" failed to get clusters.cluster.kubesphere.io member1 (HTTP 429): storage is (re)initializing',
      'waiting for Initialized; retrying after: cannot reach the API server of context "host" at https://127.0.0.1:6443 (ECONNREFUSED)',
      'waiting for Initialized; retrying after: the API server of context "host" did not answer within 30s',
      'waiting for Initialized; retrying after: the API server of context "host" failed to get clusters.cluster.kubesphere.io member1 (HTTP 500): Internal error occurred',
      'finished',
    ])
  })

  for (const [label, error] of [
    ['forbidden (403)', apiFailure(403, 'clusters is forbidden')],
    ['not found (404, the CRD is gone)', apiFailure(404, 'the server could not find the requested resource')],
    ['unauthorized (401)', apiFailure(401, 'Unauthorized')],
  ] as const) {
    it(`fails at once on ${label}`, async () => {
      await assert.rejects(
        waitUntil({
          what: 'the test',
          defaultTimeoutMs: 10_000,
          intervalMs: 20,
          poll: scripted('waiting', error, 'done'),
          onTimeout: timedOut,
        }),
        (thrown) => thrown === error,
      )
    })
  }

  it('times out with the transient failure as the last state when it lasts until the deadline', async () => {
    const failing = apiFailure(503, 'etcdserver: request timed out')
    await assert.rejects(
      waitUntil({
        what: 'the test',
        defaultTimeoutMs: 200,
        intervalMs: 20,
        poll: () => Promise.reject(failing),
        onTimeout: timedOut,
      }),
      /gave up after 200 ms \(retrying after: .*HTTP 503\): etcdserver: request timed out\)/,
    )
  })

  it("applies the user's --timeout instead of the wait's default, and 0 as no limit", async () => {
    await assert.rejects(
      waitUntil({
        what: 'the test',
        defaultTimeoutMs: 60_000,
        timeoutMs: 100,
        intervalMs: 20,
        poll: scripted(...Array<string>(100).fill('waiting')),
        onTimeout: timedOut,
      }),
      /gave up after 100 ms/,
    )
    const final = await waitUntil({
      what: 'the test',
      defaultTimeoutMs: 1,
      timeoutMs: 0,
      intervalMs: 20,
      poll: scripted('waiting', 'waiting', 'waiting', 'done'),
      onTimeout: timedOut,
    })
    assert.equal(final, 'finished')
  })

  it('stops at once when the run is interrupted, without waiting for the next poll', async () => {
    const waiting = waitUntil({
      what: 'the test',
      defaultTimeoutMs: 60_000,
      intervalMs: 60_000,
      poll: scripted('waiting', 'waiting'),
      onTimeout: timedOut,
    })
    // The first poll answered and the loop sleeps (the first pause is a tenth of 60 s).
    await new Promise((resolve) => setImmediate(resolve))
    const started = performance.now()
    interruption.interrupt('SIGINT')
    await assert.rejects(waiting, (error) => error instanceof KsctlError && error.code === 'INTERRUPTED')
    assert.ok(performance.now() - started < 500)
    assert.equal(progress.current(), undefined, 'the wait is no longer shown')
  })
})
