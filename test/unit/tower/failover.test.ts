import assert from 'node:assert/strict'
import type http from 'node:http'
import https from 'node:https'
import {setTimeout as sleep} from 'node:timers/promises'

import TowerAgentCommand from '../../../commands/tower/agent.js'
import TowerProxyCommand from '../../../commands/tower/proxy.js'
import type {TowerAgent} from '../../../src/tower/agent/agent.js'
import {parseKeepalive} from '../../../src/tower/shared/keepalive.js'
import {KEEPALIVE_MISSED_INTERVALS} from '../../../src/tunnel/index.js'
import {FaultyLink} from '../../helpers/faulty-link.js'
import {loopbackPki} from '../../helpers/test-pki.js'
import {freePort} from '../../testbed/http.js'
import {
  CapturedLog,
  clientCredentials,
  clusterToken,
  frontEndRequest,
  startAgent,
  startProxy,
  startUpstream,
  until,
  type ProxyHarness,
} from './harness.js'

describe('tower failover between agents of one cluster, under faults the test controls', function () {
  this.timeout(60_000)
  let log: CapturedLog
  let harness: ProxyHarness
  let credentials: Awaited<ReturnType<typeof clientCredentials>>
  let agents: TowerAgent[]
  let cleanups: (() => Promise<void>)[]

  beforeEach(() => {
    log = new CapturedLog()
    agents = []
    cleanups = []
  })

  afterEach(async () => {
    await Promise.all(agents.map((agent) => agent.stop()))
    await harness.proxy.stop()
    for (const cleanup of cleanups.reverse()) await cleanup()
    assert.ok(!log.text.includes(clusterToken), 'a log line holds the tunnel token')
  })

  async function proxy(options: {pingIntervalMs?: number} = {}): Promise<void> {
    harness = await startProxy(log, undefined, options)
    credentials = await clientCredentials(harness.ca)
  }

  /** Starts an agent and waits until the proxy counts its session, so that sessions join in a known order. */
  async function agent(port: number, options: Parameters<typeof startAgent>[2] = {}): Promise<TowerAgent> {
    const sessions = harness.proxy.pool.count('member')
    const started = startAgent(log, port, options)
    agents.push(started)
    await until(() => harness.proxy.pool.count('member') === sessions + 1)
    return started
  }

  /** Rounds of concurrent requests: each answer's status, in order. */
  async function rounds(path: string, count: number, concurrency: number): Promise<number[]> {
    const statuses: number[] = []
    for (let round = 0; round < count; round++) {
      const answers = await Promise.all(
        Array.from({length: concurrency}, () =>
          frontEndRequest(
            `https://127.0.0.1:${harness.proxy.frontEndPort}/clusters/member${path}`,
            credentials,
          ),
        ),
      )
      statuses.push(...answers.map((answer) => answer.status))
    }
    return statuses
  }

  it('sends no stream to an agent whose destination refuses connections while another agent serves it', async () => {
    await proxy()
    const echo = await startUpstream()
    cleanups.push(() => echo.close())
    const refusing = {host: '127.0.0.1', port: await freePort()}
    // The refusing agent joins first: with the fewest open streams (it keeps none), it would be first choice.
    await agent(harness.proxy.agentPort, {allowed: new Map([['echo', refusing]])})
    await agent(harness.proxy.agentPort, {allowed: new Map([['echo', {host: '127.0.0.1', port: echo.port}]])})
    const statuses = await rounds('/destinations/echo/hello', 5, 8)
    assert.deepEqual(statuses, Array<number>(40).fill(200))
    assert.match(log.text, /out of the rotation for it/)
  })

  it('sends no stream to an agent that cannot reach kube-apiserver while another agent can', async () => {
    await proxy()
    const pki = await loopbackPki('tower-failover')
    const member = await startUpstream(pki.server)
    cleanups.push(() => member.close())
    const at = (port: number) => () =>
      Promise.resolve({
        address: {host: '127.0.0.1', port},
        tls: {ca: pki.ca.certPem},
        authorization: 'Bearer sa',
      })
    await agent(harness.proxy.agentPort, {kubernetes: at(await freePort())})
    await agent(harness.proxy.agentPort, {kubernetes: at(member.port)})
    const statuses = await rounds('/api/v1/namespaces', 5, 8)
    assert.deepEqual(statuses, Array<number>(40).fill(200))
  })

  it('takes an agent whose link silently drops packets out of the rotation within seconds, not at the keepalive deadline', async () => {
    // Keepalive deadlines a minute away: only the answer deadline of a PING can explain a fast failover.
    await proxy({pingIntervalMs: 20_000})
    const echo = await startUpstream()
    cleanups.push(() => echo.close())
    const link = await FaultyLink.start({host: '127.0.0.1', port: harness.proxy.agentPort})
    cleanups.push(() => link.close())
    const allowed = new Map([['echo', {host: '127.0.0.1', port: echo.port}]])
    await agent(link.port, {allowed, keepaliveMs: 20_000})
    // The first agent alone serves for a while: the proxy keeps its streams for the next requests.
    assert.deepEqual(await rounds('/destinations/echo/warm', 2, 8), Array<number>(16).fill(200))
    await agent(harness.proxy.agentPort, {allowed, keepaliveMs: 20_000})

    link.stall()
    const started = performance.now()
    // The first requests go out on the first agent's kept streams and get no answer.
    const statuses = await rounds('/destinations/echo/during', 3, 8)
    const elapsedMs = performance.now() - started
    assert.deepEqual(statuses, Array<number>(24).fill(200))
    assert.ok(
      elapsedMs < 15_000,
      `24 requests took ${Math.round(elapsedMs)} ms with one agent's link stalled`,
    )
    assert.match(log.text, /an agent stopped answering: its session is out of the rotation/)
    assert.equal(
      harness.proxy.pool.count('member'),
      2,
      'the stalled session is out of the rotation, not dead',
    )
    assert.equal(harness.proxy.pool.candidates('member').length, 1)

    link.heal()
    await until(() => harness.proxy.pool.candidates('member').length === 2, 10_000)
    assert.match(log.text, /its session is back in the rotation/)
  })
})

describe('tower proxy with its only agent silent', function () {
  this.timeout(60_000)

  it('fails a request within seconds with 502 saying the agent does not answer, not at the keepalive deadline', async () => {
    const log = new CapturedLog()
    const harness = await startProxy(log, undefined, {pingIntervalMs: 20_000})
    const credentials = await clientCredentials(harness.ca)
    const echo = await startUpstream()
    const link = await FaultyLink.start({host: '127.0.0.1', port: harness.proxy.agentPort})
    const agent = startAgent(log, link.port, {
      keepaliveMs: 20_000,
      allowed: new Map([['echo', {host: '127.0.0.1', port: echo.port}]]),
    })
    const url = `https://127.0.0.1:${harness.proxy.frontEndPort}/clusters/member/destinations/echo/x`
    try {
      await until(() => agent.ready && harness.proxy.pool.count('member') === 1)
      link.stall()
      const started = performance.now()
      const answer = await frontEndRequest(url, credentials)
      const elapsedMs = performance.now() - started
      assert.equal(answer.status, 502)
      assert.match(answer.body, /the agent of cluster member is connected but does not answer/)
      assert.ok(elapsedMs < 10_000, `answered after ${Math.round(elapsedMs)} ms`)
      link.heal()
      await until(() => harness.proxy.pool.candidates('member').length === 1, 10_000)
      assert.equal((await frontEndRequest(url, credentials)).status, 200)
    } finally {
      link.heal()
      await agent.stop()
      await harness.proxy.stop()
      await link.close()
      await echo.close()
    }
  })
})

describe('tower proxy with host clients that stop reading', function () {
  this.timeout(60_000)

  it('holds no more than its session budget: the streams holding the most are reset, the others and new requests are served', async () => {
    const budgetBytes = 2 * 1024 * 1024
    const log = new CapturedLog()
    const harness = await startProxy(log, undefined, {bufferBudgetBytes: budgetBytes})
    const credentials = await clientCredentials(harness.ca)
    const echo = await startUpstream()
    const agent = startAgent(log, harness.proxy.agentPort, {
      allowed: new Map([['echo', {host: '127.0.0.1', port: echo.port}]]),
    })
    const url = (path: string) =>
      `https://127.0.0.1:${harness.proxy.frontEndPort}/clusters/member/destinations/echo${path}`
    const stalled: http.IncomingMessage[] = []
    try {
      await until(() => agent.ready)
      // Twelve downloads whose client reads the head and then nothing: twelve windows are more than the budget.
      const size = 8 * 1024 * 1024
      for (let index = 0; index < 12; index++) {
        const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
          https.get(url(`/big/${size}`), {agent: false, ...credentials}, resolve).on('error', reject)
        })
        response.pause()
        stalled.push(response)
      }
      const session = () => harness.proxy.pool.candidates('member')[0]
      await until(() => (session()?.stats.streamsResetForBuffer ?? 0) > 0, 30_000)
      const stats = session()?.stats
      assert.ok((stats?.bytesHeld ?? Infinity) <= budgetBytes, `${stats?.bytesHeld} bytes held`)
      assert.match(log.text, /reset a stream whose reader stopped/)
      assert.equal((await frontEndRequest(url('/after'), credentials)).status, 200)
      // The readers come back: those whose stream was reset get a cut response, the others all of it.
      const outcomes = await Promise.all(
        stalled.map(
          (response) =>
            new Promise<string>((resolve) => {
              let bytes = 0
              response.on('data', (chunk: Buffer) => (bytes += chunk.length))
              response.once('error', () => resolve('cut'))
              response.once('close', () => resolve(response.complete && bytes === size ? 'whole' : 'cut'))
              response.resume()
            }),
        ),
      )
      const resets = session()?.stats.streamsResetForBuffer ?? 0
      assert.deepEqual(
        [
          outcomes.filter((outcome) => outcome === 'cut').length,
          outcomes.filter((outcome) => outcome === 'whole').length,
        ],
        [resets, 12 - resets],
      )
    } finally {
      for (const response of stalled) response.destroy()
      await agent.stop()
      await harness.proxy.stop()
      await echo.close()
    }
  })
})

describe('tower keepalive', function () {
  this.timeout(60_000)

  it('finds a dead link within 30 s on both sides by default, and both sides take --keepalive', () => {
    for (const command of [TowerAgentCommand, TowerProxyCommand]) {
      const flag = command.flags.keepalive
      assert.ok(flag !== undefined, `${command.name} has no --keepalive`)
      const intervalMs = parseKeepalive(String(flag.default))
      assert.ok(intervalMs * KEEPALIVE_MISSED_INTERVALS <= 30_000, `${command.name}: ${String(flag.default)}`)
    }
    assert.throws(() => parseKeepalive('0s'), /must be from 100ms to 10m/)
  })

  it('a stalled link: both sides end the session within three intervals, the agent reports not ready, and service resumes when it heals', async () => {
    const intervalMs = 300
    const log = new CapturedLog()
    const harness = await startProxy(log, undefined, {pingIntervalMs: intervalMs})
    const credentials = await clientCredentials(harness.ca)
    const echo = await startUpstream()
    const link = await FaultyLink.start({host: '127.0.0.1', port: harness.proxy.agentPort})
    const agent = startAgent(log, link.port, {
      keepaliveMs: intervalMs,
      allowed: new Map([['echo', {host: '127.0.0.1', port: echo.port}]]),
    })
    const request = () =>
      frontEndRequest(
        `https://127.0.0.1:${harness.proxy.frontEndPort}/clusters/member/destinations/echo/x`,
        credentials,
      )
    try {
      await until(() => agent.ready && harness.proxy.pool.count('member') === 1)
      assert.equal((await request()).status, 200)
      const ended = (): number =>
        log.lines.filter((line) => line.includes('session with the proxy ended')).length

      link.stall()
      const stalledAt = performance.now()
      await until(() => harness.proxy.pool.count('member') === 0 && ended() === 1 && !agent.ready, 10_000)
      const deadMs = performance.now() - stalledAt
      // Three intervals after the last frame, which came at most one interval before the stall (and timers slip).
      assert.ok(deadMs < 3 * intervalMs + 1500, `both sides took ${Math.round(deadMs)} ms to end the session`)

      await sleep(intervalMs)
      link.heal()
      await until(() => agent.ready && harness.proxy.pool.count('member') === 1, 20_000)
      assert.equal((await request()).status, 200)
    } finally {
      await agent.stop()
      await harness.proxy.stop()
      await link.close()
      await echo.close()
    }
  })
})
